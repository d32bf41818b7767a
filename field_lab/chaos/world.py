"""The platform a fault run works on (seeded the same way every time), and the judge's view of
it at the end: its audit API, the handsets' stores, and meters that type every keycode."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from field_lab.check.evidence import (
    AuditClient,
    HandsetEvidence,
    PlatformEvidence,
    keycodes_by_device,
)
from field_lab.check.judge import Claim, Verdict, judge
from field_lab.measure.history import History
from field_lab.world.fixture import Fixture, Stocking, seed
from field_lab.world.sites import credit_granted
from server_stub.app import Platform as StubConfig
from server_stub.keycodes import DAY_S, DeviceSecret

PRICE = 100
MM_SECRET = b"chaos-operator-secret"
AUDIT_TOKEN = "chaos-audit-token"
CONFIG = StubConfig(mm_secret=MM_SECRET, audit_token=AUDIT_TOKEN)
"""How every fault run's platform is configured (in process or as `server-stub serve`)."""


def stock(path: Path, devices: int, seed_: int = 7) -> Fixture:
    """One plan, one agent with `devices` Nexus full devices in stock (same keys per seed)."""
    return seed(path, Stocking(1, devices, {"nexus-full": 1.0}, PRICE, seed_))


def claim(device: int, amount: int) -> Claim:
    """What paying `amount` for `device` buys: a day per PRICE."""
    return Claim(device, amount // PRICE * DAY_S)


def meters(
    platform: PlatformEvidence,
    handsets: Sequence[HandsetEvidence],
    secrets: Mapping[int, DeviceSecret],
) -> dict[int, float]:
    """Every keycode the platform issued, then any other a handset holds, typed into a fresh
    meter per device: the credit each meter granted."""
    typed: dict[int, list[str]] = {device: [] for device in secrets}
    for device, codes in keycodes_by_device(platform.keycodes).items():
        typed.setdefault(device, []).extend(k.text for k in codes)
    for handset in handsets:
        for device, text in handset.keycodes:
            if text not in typed.setdefault(device, []):
                typed[device].append(text)
    return {d: credit_granted(secrets[d], texts) for d, texts in typed.items() if d in secrets}


async def verdict(
    url: str,
    history: History,
    claims: Mapping[str, Claim],
    handsets: Sequence[HandsetEvidence],
    secrets: Mapping[int, DeviceSecret],
) -> tuple[Verdict, PlatformEvidence]:
    """The judge on a settled fault run."""
    evidence = await AuditClient(url, AUDIT_TOKEN).evidence()
    found = judge(
        history,
        claims,
        platform=evidence,
        handsets=handsets,
        meters=meters(evidence, handsets, secrets),
    )
    return found, evidence


def digest(evidence: PlatformEvidence) -> str:
    """One hash of what the platform applied, as its audit tells it: equal digests, same
    business state. No ids, times or handsets' clocks, which legitimately differ."""
    state = {
        "operations": sorted((o.key, o.kind, o.outcome) for o in evidence.operations),
        "keycodes": sorted(
            (k.device, k.message_id, k.text, k.credit_s, k.paid_by or "") for k in evidence.keycodes
        ),
        "payments": sorted((p.key, p.outcome, p.device or 0, p.amount) for p in evidence.payments),
    }
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]
