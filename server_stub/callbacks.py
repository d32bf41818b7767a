"""Mobile-money callbacks: the operator's message, its validation, and how we answer it.

Pure: `parse_callback` turns a JSON body into a `MoneyCallback` or raises a coded
`RequestError`; `ANSWERS` is the table from what the store did with a callback to the HTTP
status and body the operator gets. Operators retry on 5xx and timeouts and stop on anything
else, so every stored outcome (including refusals) is answered the same way on every replay:
a retry can never turn into a second credit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import RequestError

SIGNATURE_HEADER = "X-MM-Signature"
MAX_MS = 2**53
MAX_AMOUNT = 10**9
TXN_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
ACCOUNT_RE = re.compile(r"[0-9]{1,10}")
MSISDN_RE = re.compile(r"\+?[0-9]{6,16}")
STATUSES = ("success", "failed")


class Outcome(Enum):
    """What the platform did with one operator transaction (stored; replays repeat it)."""

    CONFIRMED = "confirmed"  # credited, keycode issued when the money buys a day
    FAILED = "failed"  # the operator reported the payment failed; nothing credited
    UNKNOWN_ACCOUNT = "unknown_account"  # no sold device with that account number


@dataclass(frozen=True)
class MoneyCallback:
    txn: str
    account: str
    amount: int
    msisdn: str
    status: str
    paid_ms: int

    def digest(self) -> bytes:
        """Canonical content, so a replay with different content is told apart."""
        canon = json.dumps(
            [self.txn, self.account, self.amount, self.msisdn, self.status, self.paid_ms]
        )
        return hashlib.sha256(canon.encode()).digest()[:16]

    def to_json(self) -> dict[str, object]:
        return {
            "txn": self.txn,
            "account": self.account,
            "amount": self.amount,
            "msisdn": self.msisdn,
            "status": self.status,
            "paid_ms": self.paid_ms,
        }


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    duplicate: bool
    keycode: bool = False  # a keycode was issued for this payment


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_signature(secret: bytes, body: bytes, given: str | None) -> None:
    if given is None:
        raise RequestError(401, "missing_signature", f"{SIGNATURE_HEADER} header required")
    if not hmac.compare_digest(sign(secret, body), given):
        raise RequestError(401, "bad_signature", "callback signature does not match the body")


def _text(doc: dict[str, object], name: str, pattern: re.Pattern[str]) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RequestError(400, "bad_field", f"{name} must be a string matching {pattern.pattern}")
    return value


def _int(doc: dict[str, object], name: str, lo: int, hi: int) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(400, "bad_field", f"{name} must be an integer in {lo}..{hi}")
    return value


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON object body, or the coded refusal every JSON endpoint gives."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "malformed_json", str(exc)) from exc
    if not isinstance(doc, dict):
        raise RequestError(400, "malformed_json", "body must be a JSON object")
    return doc


def parse_callback(body: bytes) -> MoneyCallback:
    doc = json_object(body)
    status = doc.get("status")
    if status not in STATUSES:
        raise RequestError(400, "bad_field", f"status must be one of {', '.join(STATUSES)}")
    return MoneyCallback(
        txn=_text(doc, "txn", TXN_RE),
        account=_text(doc, "account", ACCOUNT_RE),
        amount=_int(doc, "amount", 1, MAX_AMOUNT),
        msisdn=_text(doc, "msisdn", MSISDN_RE),
        status=str(status),
        paid_ms=_int(doc, "paid_ms", 0, MAX_MS),
    )


# outcome -> (HTTP status, error code or None); a duplicate gets the same status
ANSWERS: dict[Outcome, tuple[int, str | None]] = {
    Outcome.CONFIRMED: (200, None),
    Outcome.FAILED: (200, None),
    Outcome.UNKNOWN_ACCOUNT: (422, "unknown_account"),
}


def answer_body(txn: str, answer: Answer) -> tuple[int, dict[str, object]]:
    status, code = ANSWERS[answer.outcome]
    body: dict[str, object] = {
        "txn": txn,
        "result": answer.outcome.value,
        "duplicate": answer.duplicate,
        "keycode_issued": answer.keycode,
    }
    if code is not None:
        body["error"] = code
        body["detail"] = f"transaction {txn} refused: {code}"
    return status, body
