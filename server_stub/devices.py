"""Device lists as CSV (the OpenPAYGO device-list shape, extended to Nexus): parse, write, make.

Columns: ``serial,format,key,starting_code,time_divider``; ``format`` is one of
nexus_full, nexus_small, openpaygo, openpaygo_restricted; ``key`` is 32 hex characters.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence

from agent_client.protocol.keycodes import KeycodeFormat

from .errors import SetupError
from .keycodes import DeviceSecret
from .store import DeviceRecord

COLUMNS = ("serial", "format", "key", "starting_code", "time_divider")
MAX_SERIAL = 2**32 - 1


def parse_devices_csv(text: str) -> list[DeviceRecord]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or tuple(reader.fieldnames[:5]) != COLUMNS:
        raise SetupError(f"device CSV must start with the header {','.join(COLUMNS)}")
    records: list[DeviceRecord] = []
    seen: set[int] = set()
    for line, row in enumerate(reader, start=2):
        try:
            serial = int(row["serial"])
            fmt = KeycodeFormat[row["format"].strip().upper()]
            secret = DeviceSecret(
                fmt,
                bytes.fromhex(row["key"].strip()),
                int(row["starting_code"] or 0),
                int(row["time_divider"] or 1),
            )
        except (KeyError, ValueError, TypeError, AttributeError, SetupError) as exc:
            raise SetupError(f"device CSV line {line}: {exc}") from exc
        if not 1 <= serial <= MAX_SERIAL:
            raise SetupError(f"device CSV line {line}: serial {serial} outside 1..{MAX_SERIAL}")
        if serial in seen:
            raise SetupError(f"device CSV line {line}: serial {serial} repeated")
        seen.add(serial)
        records.append(DeviceRecord(serial, secret))
    return records


def write_devices_csv(records: Sequence[DeviceRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in records:
        s = r.secret
        writer.writerow(
            [r.device, s.format.name.lower(), s.key.hex(), s.starting_code, s.time_divider]
        )
    return out.getvalue()


def make_devices(
    first_serial: int, count: int, fmt: KeycodeFormat, rng: random.Random
) -> list[DeviceRecord]:
    """Fresh devices with random keys (and starting codes for OpenPAYGO)."""
    opaygo = fmt in (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)
    return [
        DeviceRecord(
            first_serial + i,
            DeviceSecret(fmt, rng.randbytes(16), rng.randrange(1, 10**9) if opaygo else 0),
        )
        for i in range(count)
    ]
