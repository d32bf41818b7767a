"""Idempotency answers: a key seen before is answered as it was, unless its content differs.

An operation's key is (handset, seq) and an operator transaction's is its id; what is kept
with the key is a digest of the content and the outcome, so a replay costs no re-decision.
"""

from __future__ import annotations

import hashlib

from agent_client.protocol.frames import Reason

DIGEST_BYTES = 16


def digest(content: bytes) -> bytes:
    """What is stored to tell a replay from a different operation under the same key."""
    return hashlib.sha256(content).digest()[:DIGEST_BYTES]


def conflicts(stored_digest: bytes, new_digest: bytes) -> bool:
    """A key seen before came with other content: never applied, answered as a conflict."""
    return stored_digest != new_digest


def answer(stored_digest: bytes, new_digest: bytes, stored_outcome: int) -> int:
    """The answer to a key seen before: its stored outcome, or `conflict` for other content."""
    return int(Reason.CONFLICT) if conflicts(stored_digest, new_digest) else int(stored_outcome)
