"""Who may do what: distributor API tokens and the strength of provisioning codes.

A token is shown once and stored only as its SHA-256: a leaked database grants no access.
Tokens are 256 random bits, so a plain hash (no salt, no stretching) is enough, and looking
one up by its hash reveals nothing an attacker could steer towards the right token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import string

TOKEN_PREFIX = "payg_"
MIN_CODE_LENGTH = 12
MIN_CODE_CLASSES = 3
MIN_CODE_BITS = 60
CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def new_token() -> str:
    """A fresh distributor token: visible ASCII without spaces, fit for a Bearer header."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode(errors="surrogatepass")).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    """Compare in constant time (the digests are what is stored and what was presented)."""
    return hmac.compare_digest(a, b)


def bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header; None when it is not one."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _classes(code: str) -> int:
    inside = sum(any(c in cls for c in code) for cls in CLASSES)
    return inside + any(not any(c in cls for cls in CLASSES) for c in code)


def code_weakness(code: str) -> str | None:
    """Why a user-chosen provisioning code is too easy to guess, or None when it is not.

    A code is guessed online, so the throttle slows each guess; it must still hold out for
    long: at least 12 characters, at least three kinds of characters (lower case, upper case,
    digits, others), and about 60 bits by a character-pool estimate."""
    if not code.isprintable() or any(c.isspace() for c in code):
        return "use printable characters without spaces"
    if len(code) < MIN_CODE_LENGTH:
        return f"it has {len(code)} characters; use at least {MIN_CODE_LENGTH}"
    classes = _classes(code)
    if classes < MIN_CODE_CLASSES:
        return (
            f"it mixes {classes} kind(s) of characters; mix at least {MIN_CODE_CLASSES} of lower"
            " case, upper case, digits and symbols"
        )
    pool = sum(len(cls) for cls in CLASSES if any(c in cls for c in code))
    pool += 32 if _classes(code) > sum(any(c in cls for c in code) for cls in CLASSES) else 0
    distinct = len(set(code))
    bits = distinct * math.log2(pool) + (len(code) - distinct)
    if bits < MIN_CODE_BITS:
        return f"it repeats characters (about {bits:.0f} bits); use at least {MIN_CODE_BITS}"
    return None
