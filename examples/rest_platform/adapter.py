"""The adapter that lets the lab's handsets drive Sunrise (`platform.py`): the recipe a user
copies for their own platform. Three members — `max_batch`, `provision`, `exchange` — map the
handset's operations onto the platform's API and its answers back onto a `Result`.

    field-lab run --target URL --fixture F --adapter examples.rest_platform.adapter:SunriseAdapter
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent_client.adapters import Link, Provisioned, provision_json
from agent_client.errors import TransientError
from agent_client.protocol.frames import Keycode, Reason
from agent_client.protocol.keycodes import KeycodeFormat, pack_keycode
from agent_client.protocol.ops import Kind, Operation
from agent_client.protocol.sync import Result
from agent_client.transport import refusal

TYPES = {
    Kind.REGISTER_CUSTOMER: "customer",
    Kind.RECORD_SALE: "sale",
    Kind.RECORD_PAYMENT: "payment",
}
REASONS = {r.name.lower(): r for r in Reason}


def transaction(op: Operation) -> dict[str, Any]:
    """One outbox operation as a Sunrise transaction (its own field names)."""
    doc: dict[str, Any] = {"client_ref": op.seq, "type": TYPES[op.kind], "recorded_at": op.at}
    if op.kind is Kind.REGISTER_CUSTOMER:
        doc |= {"name": op.field("name"), "phone": op.field("phone")}
    elif op.kind is Kind.RECORD_SALE:
        doc |= {
            "customer_ref": op.field("customer"),
            "serial": op.field("device"),
            "down_payment": op.field("down_payment"),
        }
    else:
        doc |= {"serial": op.field("account"), "amount": op.field("amount")}
    return doc


class SunriseAdapter:
    max_batch = 50  # Sunrise takes at most 100 transactions a request
    polls = True  # an empty request still brings unlock codes back

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        answer = await provision_json(link, "/api/v1/handsets", {"agent": agent, "pin": code})
        handset, token = answer.get("handset_id"), answer.get("token")
        if not (isinstance(handset, int) and isinstance(token, str)):
            raise TransientError(f"registration answer is not Sunrise's: {answer!r:.200}")
        return Provisioned(handset, None, {"token": token})

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        body = json.dumps(
            {"transactions": [transaction(op) for op in ops], "since": cursor}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {link.meta.get('token', '')}",
        }
        reply = await link.transport.post("/api/v1/transactions", body, headers)
        if reply.status != 200:
            raise refusal(reply)
        try:
            return self._result(json.loads(reply.body), ops, cursor, link.now_ms())
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError(f"Sunrise answered something else: {exc}") from exc

    @staticmethod
    def _result(doc: dict[str, Any], ops: Sequence[Operation], cursor: int, now_ms: int) -> Result:
        sent = {op.seq for op in ops}
        acked, rejected = [], []
        for r in doc["results"]:
            ref = int(r["client_ref"])
            if ref not in sent:
                continue  # not ours to settle
            if r["status"] == "ok":
                acked.append(ref)
            else:
                # a reason Sunrise has and the handset does not: refused all the same
                rejected.append((ref, REASONS.get(str(r["reason"]), Reason.CONFLICT)))
        entries = []
        for code in doc["unlock_codes"]:
            n = int(code["id"])
            if n > cursor:
                fmt = KeycodeFormat.NEXUS_FULL
                number = pack_keycode(fmt, str(code["code"]))
                keycode = Keycode(
                    int(code["client_ref"]),
                    int(code["serial"]),
                    fmt,
                    number,
                    int(code["hours"]) * 3600,
                )
                entries.append((n, keycode))
        next_cursor = max(cursor, int(doc["next_since"]))
        return Result(
            tuple(acked), tuple(rejected), tuple(entries), next_cursor, False, now_ms, True
        )
