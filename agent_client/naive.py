"""A naive handset: one JSON request per operation, as common REST clients do.

It shares the durable outbox and the signing of `Agent`, and differs only on the wire: each
operation travels as its own `POST /v1/ops` with named JSON fields, and the keycode comes back
inline. It exists as the baseline the compact protocol is measured against (benchmarks, and
`field-lab run --compare`), not as a client to ship.
"""

from __future__ import annotations

import json

from .agent import Agent, SyncReport
from .errors import ServerRefused, TransientError
from .protocol.frames import Keycode, Reason
from .protocol.keycodes import KeycodeFormat, pack_keycode
from .protocol.ops import SCHEMAS, Operation
from .protocol.sync import Result
from .transport import refusal

OPS_PATH = "/v1/ops"


def op_json(op: Operation) -> bytes:
    fields = {spec.name: value for spec, value in zip(SCHEMAS[op.kind], op.fields, strict=True)}
    doc = {"seq": op.seq, "type": op.kind.name.lower(), "recorded_at": op.at, "fields": fields}
    return json.dumps(doc).encode()


def keycodes_from(answer: object, op_seq: int) -> list[Keycode]:
    """The inline keycodes of an answer; anything malformed is a transient failure."""
    try:
        assert isinstance(answer, dict)
        out = []
        for k in answer.get("keycodes", []):
            fmt = KeycodeFormat[str(k["format"]).upper()]
            number = pack_keycode(fmt, str(k["keycode"]))
            out.append(Keycode(op_seq, int(k["device"]), fmt, number, int(k["credit_s"])))
        return out
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise TransientError(f"answer is not an operation result: {exc}") from exc


class NaiveAgent(Agent):
    async def sync(self, *, max_exchanges: int = 64, max_wait_s: float = 0.0) -> SyncReport:
        async with self._sync_lock:
            report = SyncReport()
            for op in await self.store.sendable(max_exchanges):
                acked: tuple[int, ...] = ()
                rejected: tuple[tuple[int, Reason], ...] = ()
                body = op_json(op)
                ts = self._stamper.stamp(int(self._clock() * 1000))
                await self.store.mark_in_flight([op.seq], last_ms=ts)
                headers = {
                    "Content-Type": "application/json",
                    **self._key.headers("POST", OPS_PATH, body, self.handset, ts),
                }
                report.exchanges += 1
                try:
                    reply = await self.transport.post(OPS_PATH, body, headers)
                    if reply.status == 200:
                        keycodes = keycodes_from(json.loads(reply.body), op.seq)
                        acked, rejected = (op.seq,), ()
                    elif reply.status == 422:
                        keycodes = []
                        code = str(json.loads(reply.body).get("error", ""))
                        rejected = ((op.seq, Reason[code.upper()]),)
                    else:
                        raise refusal(reply)
                except (TransientError, ValueError, KeyError) as exc:
                    report.failures += 1
                    report.last_error = str(exc)
                    break
                except ServerRefused:
                    raise
                now_ms = int(self._clock() * 1000)
                result = Result(acked, rejected, (), self.core.cursor, False, now_ms, True)
                await self.store.apply(result, now_ms, last_ms=self._stamper.last_ms)
                report.acked += acked
                report.rejected += rejected
                report.keycodes += keycodes
            report.pending = len(await self.store.sendable(10**6))
            return report
