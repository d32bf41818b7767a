"""Cost of one Nexus keycode validation on this machine, as JSON lines.

Each line: case, iterations, microseconds per validation, SipHash calls per validation.
Run: `.venv/bin/python benchmarks/nexus_validators.py` (or `make bench`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from nexus_keycode.protocols.full import FullMessage
from nexus_keycode.protocols.small import (
    AddCreditSmallMessage,
    ExtendedSmallMessage,
    ExtendedSmallMessageType,
)

import meter_sim.nexus.mac as mac
from meter_sim.nexus import NexusState, process_full, process_small
from meter_sim.outcomes import PaygState

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")
OTHER_KEY = bytes(16)
STATE = NexusState(pd=40)
ITERATIONS = 2000


def measure(case: str, validate: Callable[[], object]) -> None:
    real = mac.siphash24
    calls = 0

    def counting(key: bytes, data: bytes) -> int:
        nonlocal calls
        calls += 1
        return real(key, data)

    mac.siphash24 = counting
    try:
        validate()
    finally:
        mac.siphash24 = real
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        validate()
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "bench": "nexus_validate",
                "case": case,
                "iterations": ITERATIONS,
                "us_per_validation": round(elapsed / ITERATIONS * 1e6, 1),
                "siphash_calls": calls,
            }
        )
    )


def main() -> None:
    full = FullMessage.add_credit(id_=41, hours=24, secret_key=KEY).to_keycode(
        prefix="", suffix="", separator=""
    )
    small = AddCreditSmallMessage(id_=41, days=7, secret_key=KEY).to_keycode(separator="")[1:]
    ext_type = ExtendedSmallMessageType.SET_CREDIT_WIPE_RESTRICTED_FLAG
    extended = ExtendedSmallMessage(ext_type, id_=41, days=30, secret_key=KEY)
    ext = extended.to_keycode(separator="")[1:]
    cases = [
        ("full_valid", process_full, full, KEY),
        ("full_wrong_key", process_full, full, OTHER_KEY),
        ("small_valid", process_small, small, KEY),
        ("extended_valid", process_small, ext, KEY),
        ("extended_wrong_key_worst_case", process_small, ext, OTHER_KEY),
    ]
    for case, process, frame, key in cases:
        measure(
            case,
            lambda p=process, f=frame, k=key: p(
                f, secret_key=k, state=STATE, payg=PaygState.ENABLED
            ),
        )


if __name__ == "__main__":
    main()
