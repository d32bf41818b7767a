"""Our keycode encoders against the field's reference encoders, message by message.

Each case draws a random key and message (ids over the whole 32-bit range, amounts over and
beyond what a protocol carries) and asks both encoders for the code: they must give the same
text, or both refuse. The test suite runs a small sample of this (`test_equivalence.py`);
`make equivalence` runs 100,000 Nexus messages and 5,000 OpenPAYGO tokens:

    python -m tests.equivalence --nexus 100000 --openpaygo 5000 --jobs 2

and prints one JSON line with the counts and the first mismatches (exit code 1 if any).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from nexus_keycode.protocols import full as ref_full
from nexus_keycode.protocols import small as ref_small
from openpaygo import TokenType, generate_token

from meter_sim.nexus import encode
from meter_sim.nexus.full import FullType
from meter_sim.nexus.rules import WipeTarget
from meter_sim.openpaygo.encode import Kind, issue_token

Make = Callable[[], str]

_WIPE_FLAGS = {
    WipeTarget.CREDIT: ref_full.FullMessageWipeFlags.TARGET_FLAGS_0,
    WipeTarget.CREDIT_AND_IDS: ref_full.FullMessageWipeFlags.TARGET_FLAGS_1,
    WipeTarget.IDS: ref_full.FullMessageWipeFlags.WIPE_IDS_ALL,
    WipeTarget.RESTRICTED_FLAG: ref_full.FullMessageWipeFlags.WIPE_RESTRICTED_FLAG,
}
_MAINTENANCE = {
    WipeTarget.CREDIT: ref_small.MaintenanceSmallMessageType.WIPE_STATE_0,
    WipeTarget.CREDIT_AND_IDS: ref_small.MaintenanceSmallMessageType.WIPE_STATE_1,
    WipeTarget.IDS: ref_small.MaintenanceSmallMessageType.WIPE_IDS_ALL,
}
_TOKEN_TYPE = {
    Kind.ADD: TokenType.ADD_TIME,
    Kind.SET: TokenType.SET_TIME,
    Kind.DISABLE: TokenType.DISABLE_PAYG,
    Kind.SYNC: TokenType.COUNTER_SYNC,
}


@dataclass(frozen=True)
class Case:
    what: str
    ours: Make
    theirs: Make


def _full(message: ref_full.BaseFullMessage) -> str:
    return str(message.to_keycode(separator=""))


def _small(message: ref_small.SmallMessage) -> str:
    return str(message.to_keycode(separator=""))


def _id(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.5:
        return rng.randrange(0, 4096)
    if roll < 0.98:
        return rng.randrange(0, 1 << 32)
    return rng.choice((-1, 1 << 32))


def nexus_case(rng: random.Random) -> Case:
    """One random Nexus message, full or small, as both encoders are asked for it."""
    key = rng.randbytes(16)
    id_ = _id(rng)
    hours = rng.randrange(0, 100_000) if rng.random() < 0.98 else rng.choice((-1, 100_000))
    days = rng.randrange(-1, 1000)
    pick = rng.randrange(14)
    target = rng.choice(list(WipeTarget))
    small_target = rng.choice(list(_MAINTENANCE))
    cases: list[tuple[str, Make, Make]] = [
        (
            f"full add id={id_} hours={hours}",
            lambda: encode.full_add_credit(key, id_, hours),
            lambda: _full(ref_full.FullMessage.add_credit(id_, hours, key)),
        ),
        (
            f"full set id={id_} hours={hours}",
            lambda: encode.full_set_credit(key, id_, hours),
            lambda: _full(ref_full.FullMessage.set_credit(id_, hours, key)),
        ),
        (
            f"full unlock id={id_}",
            lambda: encode.full_unlock(key, id_),
            lambda: _full(ref_full.FullMessage.unlock(id_, key)),
        ),
        (
            f"full wipe id={id_} target={target.name}",
            lambda: encode.full_wipe(key, id_, target),
            lambda: _full(ref_full.FullMessage.wipe_state(id_, _WIPE_FLAGS[target], key)),
        ),
        (
            "full allow_test",
            lambda: encode.full_factory(FullType.ALLOW_TEST),
            lambda: _full(ref_full.FactoryFullMessage.allow_test()),
        ),
        (
            "full display_payg_id",
            lambda: encode.full_factory(FullType.DISPLAY_PAYG_ID),
            lambda: _full(ref_full.FactoryFullMessage.display_payg_id()),
        ),
        (
            f"small add id={id_} days={days}",
            lambda: encode.small_add_credit(key, id_, days),
            lambda: _small(ref_small.AddCreditSmallMessage(id_, days, key)),
        ),
        (
            f"small set id={id_} days={days}",
            lambda: encode.small_set_credit(key, id_, days),
            lambda: _small(ref_small.SetCreditSmallMessage(id_, days, key)),
        ),
        (
            f"small unlock id={id_}",
            lambda: encode.small_unlock(key, id_),
            lambda: _small(ref_small.UnlockSmallMessage(id_, key)),
        ),
        (
            f"small set-unlock id={id_}",
            lambda: encode.small_set_unlock(key, id_),
            lambda: _small(
                ref_small.SetCreditSmallMessage(id_, ref_small.SmallMessage.UNLOCK_FLAG, key)
            ),
        ),
        (
            f"small clear-restricted id={id_}",
            lambda: encode.small_clear_restricted(key, id_),
            lambda: _small(
                ref_small.CustomCommandSmallMessage(
                    id_, ref_small.CustomCommandSmallMessageType.WIPE_RESTRICTED_FLAG, key
                )
            ),
        ),
        (
            f"small maintenance {small_target.name}",
            lambda: encode.small_maintenance(key, small_target),
            lambda: _small(ref_small.MaintenanceSmallMessage(_MAINTENANCE[small_target], key)),
        ),
        (
            "small test short",
            lambda: encode.small_test(0),
            lambda: _small(ref_small.TestSmallMessage(ref_small.TestSmallMessageType.SHORT_TEST)),
        ),
        (
            "small test oqc",
            lambda: encode.small_test(1),
            lambda: _small(ref_small.TestSmallMessage(ref_small.TestSmallMessageType.OQC_TEST)),
        ),
    ]
    what, ours, theirs = cases[pick]
    return Case(what, ours, theirs)


def openpaygo_case(rng: random.Random) -> Case:
    """One random OpenPAYGO token (standard or extended, 0-9 or 1-4 keys)."""
    key = rng.randbytes(16)
    kind = rng.choice(list(Kind))
    extended = kind in (Kind.ADD, Kind.SET) and rng.random() < 0.3
    restricted = rng.random() < 0.5
    start = rng.randrange(1, 10**12 if extended else 10**9)
    count = rng.randrange(0, 200)
    top = 999_999 if extended else 995
    value = rng.randrange(0, top + 2) if kind in (Kind.ADD, Kind.SET) else 0

    def ours() -> str:
        new, text = issue_token(
            key, start, count, kind, value, restricted=restricted, extended=extended
        )
        return f"{new} {text}"

    def theirs() -> str:
        new, text = generate_token(
            secret_key=key.hex(),
            count=count,
            value=value if kind in (Kind.ADD, Kind.SET) else None,
            token_type=_TOKEN_TYPE[kind],
            starting_code=start,
            restricted_digit_set=restricted,
            extended_token=extended,
        )
        return f"{new} {text}"

    what = f"openpaygo {kind.value} count={count} value={value} ext={extended} rd={restricted}"
    return Case(what, ours, theirs)


def _outcome(make: Make) -> str | None:
    """The code, or None when the encoder refuses the message (any exception)."""
    try:
        return make()
    except Exception:
        return None


def mismatch(case: Case) -> str | None:
    """What differs between the two encoders for `case`, or None if they agree."""
    ours, theirs = _outcome(case.ours), _outcome(case.theirs)
    if ours == theirs:
        return None
    return f"{case.what}: ours {ours!r}, nexus-keycode/openpaygo {theirs!r}"


def run(draw: Callable[[random.Random], Case], seed: int, n: int) -> tuple[int, int, list[str]]:
    """(cases, codes both issued, mismatches) for `n` cases drawn from `seed`."""
    rng = random.Random(seed)
    issued = 0
    bad: list[str] = []
    for _ in range(n):
        case = draw(rng)
        problem = mismatch(case)
        if problem is not None:
            bad.append(problem)
        elif _outcome(case.ours) is not None:
            issued += 1
    return n, issued, bad


def _job(args: tuple[str, int, int]) -> tuple[int, int, list[str]]:
    which, seed, n = args
    return run(nexus_case if which == "nexus" else openpaygo_case, seed, n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.equivalence", description=__doc__)
    parser.add_argument("--nexus", type=int, default=100_000, help="Nexus messages")
    parser.add_argument("--openpaygo", type=int, default=5_000, help="OpenPAYGO tokens")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    args = parser.parse_args(argv)
    jobs = max(1, args.jobs)
    work: list[tuple[str, int, int]] = []
    for which, total in (("nexus", args.nexus), ("openpaygo", args.openpaygo)):
        for j in range(jobs):
            share = total // jobs + (1 if j < total % jobs else 0)
            if share:
                work.append((which, args.seed * 1000 + j + (500 if which != "nexus" else 0), share))
    started = time.perf_counter()
    report: dict[str, object] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_job, work))
    failures: list[str] = []
    for which in ("nexus", "openpaygo"):
        mine = [r for w, r in zip(work, results, strict=True) if w[0] == which]
        report[f"{which}_messages"] = sum(r[0] for r in mine)
        report[f"{which}_issued"] = sum(r[1] for r in mine)
        report[f"{which}_mismatches"] = sum(len(r[2]) for r in mine)
        failures += [m for r in mine for m in r[2]]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["first_mismatches"] = failures[:5]
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
