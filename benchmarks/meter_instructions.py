"""Instructions per Nexus code through `Meter.enter_keycode`, counted by valgrind (callgrind).

CPU time on a shared machine swings by a factor of two from run to run; the instruction count
does not. Each case runs this script twice under valgrind, once making the codes and the
meter without entering them and once entering them too; the difference divided by the number
of codes is what one code costs on the user's path (the same as `meter_validate.py` times).
Prints one JSON object per case (one `skipped` line without `valgrind` on PATH); takes about
a minute a case.

    python benchmarks/meter_instructions.py [--codes 1000] [CASE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

from meter_sim import Meter
from meter_sim.nexus.encode import full_add_credit, small_add_credit

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")
CASES = ("full", "full-duplicate", "small", "small-duplicate")
TIMEOUT_S = 600


def enter(case: str, codes: int, run: bool) -> None:
    """The measured work: with `run`, enter the case's codes on a fresh meter."""
    small = case.startswith("small")
    make = small_add_credit if small else full_add_credit
    texts = [make(KEY, i, 1) for i in range(1, codes + 1)]
    meter = Meter.nexus(KEY, "small" if small else "full", rate_limit=None)
    now = 0.0
    if case.endswith("duplicate"):  # the last 8 codes again and again, as meter_validate
        for text in texts:
            now += 1.0
            meter.enter_keycode(text, now)
        texts = (texts[-8:] * (codes // 8 + 1))[:codes]
    if run:
        for text in texts:
            now += 1.0
            meter.enter_keycode(text, now)


def counted(case: str, codes: int, run: bool) -> int:
    """Instructions valgrind counts for one child process doing `enter`."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        case,
        str(codes),
        "1" if run else "0",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed for {case}: {done.stderr.strip()[-300:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        enter(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1000, help="codes per case (default 1000)")
    parser.add_argument("cases", nargs="*", help=f"any of {', '.join(CASES)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        raise SystemExit(f"meter_instructions: unknown case {unknown[0]!r}, use {', '.join(CASES)}")
    if shutil.which("valgrind") is None:  # `make bench` runs every script: skip, say why
        print(json.dumps({"skipped": "valgrind is not installed (apt-get install valgrind)"}))
        return
    if not 8 <= args.codes <= 100_000:
        raise SystemExit("meter_instructions: --codes must be 8..100000")
    for case in args.cases or CASES:
        base = counted(case, args.codes, run=False)
        total = counted(case, args.codes, run=True)
        per_code = (total - base) / args.codes
        print(
            json.dumps(
                {"case": case, "codes": args.codes, "instructions_per_code": round(per_code)}
            )
        )


if __name__ == "__main__":
    main()
