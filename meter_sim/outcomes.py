"""What a meter answers: message outcomes and key-level feedback."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """The device's answer to a finished keycode or token.

    Values are the strings the line protocol and traces carry; they never change.
    """

    APPLIED = "applied"
    """Valid and acted on (credit changed, unlocked, flag cleared, counter synced...)."""
    DUPLICATE = "duplicate"
    """Valid but already used, or refused by policy with no effect (Nexus MESSAGE_VALID)."""
    INVALID = "invalid"
    """Malformed, wrong MAC, out of window, or not something the backend ever emits."""
    RATE_LIMITED = "rate_limited"
    """Not evaluated: the Nexus bucket is empty or the OpenPAYGO entry block is active."""
    DISPLAY_ID = "display_id"
    """The factory display-PAYG-id code: show the id, change nothing."""


class KeyFeedback(StrEnum):
    """Per-key feedback while a code is being typed."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class PaygState(StrEnum):
    """The product's PAYG state as Nexus defines it."""

    DISABLED = "disabled"
    """No credit: output off."""
    ENABLED = "enabled"
    """Credit remaining: output on until it runs out."""
    UNLOCKED = "unlocked"
    """Paid off: output on for good (until a SET relocks)."""
