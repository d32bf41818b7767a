"""What the month knows of each device a failed check names: the keycodes the platform issued
for it, what paid for them, and what its meter made of each code typed.

The judge says how many meters and keycodes are wrong and names them ("device 20000435: ...",
`Verdict.details`); this puts the evidence beside each name, so a failed month says which
keycode went wrong and how, without another run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from field_lab.check.evidence import PlatformEvidence
from field_lab.check.judge import Claim
from field_lab.measure.history import History
from field_lab.simulate.household import Keyed

MAX_DEVICES = 10
"""Devices described at most (the details name a handful per check)."""
MAX_KEYED = 40
"""Keypad entries shown per device at most (the last ones)."""
_DEVICE = re.compile(r"\bdevice (\d+)")


def _lines(details: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, line) for every string in the judge's details."""
    if isinstance(details, str):
        yield path, details
    elif isinstance(details, Mapping):
        for key, value in details.items():
            yield from _lines(value, f"{path}.{key}" if path else str(key))
    elif isinstance(details, list | tuple):
        for item in details:
            yield from _lines(item, path)


def named(details: Mapping[str, Any]) -> dict[int, list[str]]:
    """Each device the details name, with the lines that name it (device order)."""
    out: dict[int, list[str]] = {}
    for where, line in _lines(details):
        for match in _DEVICE.finditer(line):
            out.setdefault(int(match[1]), []).append(f"{where}: {line}")
    return dict(sorted(out.items()))


def findings(
    details: Mapping[str, Any],
    platform: PlatformEvidence,
    history: History,
    claims: Mapping[str, Claim],
    meters: Mapping[int, float],
    keyed: Mapping[int, list[Keyed]],
    *,
    base: float,
) -> list[dict[str, Any]]:
    """The evidence on the first `MAX_DEVICES` devices the details name; times in seconds
    from `base` (day 0 00:00)."""
    devices = dict(list(named(details).items())[:MAX_DEVICES])
    if not devices:
        return []
    issued: dict[int, list[dict[str, Any]]] = {d: [] for d in devices}
    for k in sorted(platform.keycodes, key=lambda k: (k.device, k.message_id, k.keycode)):
        if k.device in issued:
            issued[k.device].append(
                {
                    "message_id": k.message_id,
                    "text": k.text,
                    "credit_s": k.credit_s,
                    "paid_by": k.paid_by,
                    "handset": k.handset,
                }
            )
    paid: dict[int, list[dict[str, Any]]] = {d: [] for d in devices}
    for key, claim in claims.items():
        if claim.device in paid:
            paid[claim.device].append(
                {
                    "key": key,
                    "kind": history.kind(key),
                    "credit_s": claim.credit_s,
                    "status": history.final(key).value,
                }
            )
    return [
        {
            "device": device,
            "named_by": lines,
            "credited_s": round(meters.get(device, 0.0), 3),
            "paid": paid[device],
            "issued": issued[device],
            "keypad": [
                {
                    "at_s": round(e.at - base, 3),
                    "text": e.text,
                    "via": e.via,
                    "outcome": e.outcome,
                    "reason": e.reason,
                    "credit_s": round(e.credit_s, 3),
                }
                for e in keyed.get(device, [])[-MAX_KEYED:]
            ],
        }
        for device, lines in devices.items()
    ]
