"""Cost of OpenPAYGO Token validation on the simulated device; prints one JSON line per figure.

An invalid token walks `count + 65` chain steps (one pure-Python SipHash each), so the
cost grows with the device's count. The chain memo (per format, key and typed value)
removes the walk when the same value is typed again; guesses with fresh values stay cold.

    .venv/bin/python benchmarks/openpaygo_token.py
"""

from __future__ import annotations

import json
import random
import statistics
import struct
import time
from collections.abc import Callable

from openpaygo import decode_token
from openpaygo.token_encode import OpenPAYGOTokenEncoder
from openpaygo.token_shared import TokenType

from meter_sim.openpaygo import TokenState, process_token
from meter_sim.openpaygo.chain import clear_chain_cache, next_standard
from meter_sim.siphash import siphash24

KEY = bytes.fromhex("a29ab82edc5fbbc41ec9530f6dac86b1")
STARTING_CODE = 123456789
REPEATS = 5


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def median_ms(fn: Callable[[], object], before: Callable[[], object] = lambda: None) -> float:
    runs = []
    for _ in range(REPEATS):
        before()
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1e3


def main() -> None:
    message = struct.pack(">LL", 42, 42)
    emit(
        bench="siphash24_8_bytes", us=round(per_call_us(lambda: siphash24(KEY, message), 20_000), 2)
    )
    emit(bench="next_standard", us=round(per_call_us(lambda: next_standard(KEY, 42), 20_000), 2))

    rng = random.Random(7)
    for count in (1, 100, 1_000, 10_000):
        state = TokenState.initial(count)
        guess = f"{rng.randrange(10**9):09d}"

        def attempt(guess: str = guess, state: TokenState = state) -> None:
            decision = process_token(
                guess, secret_key=KEY, starting_code=STARTING_CODE, state=state
            )
            assert decision.outcome == "invalid"

        cold = median_ms(attempt, before=clear_chain_cache)
        warm = median_ms(attempt)

        def library(guess: str = guess, count: int = count) -> None:
            decode_token(
                token=guess,
                secret_key=KEY.hex(),
                count=count,
                used_counts=[count],
                starting_code=STARTING_CODE,
            )

        emit(
            bench="invalid_attempt",
            count=count,
            steps=count + 65,
            cold_ms=round(cold, 3),
            warm_ms=round(warm, 3),
            library_ms=round(median_ms(library), 3),
        )

    # A device's life in order: 300 tokens with everyday values, memo on and memo off.
    tokens = []
    server = 1
    for _ in range(300):
        mode = rng.choice([TokenType.ADD_TIME] * 4 + [TokenType.SET_TIME])
        server, token = OpenPAYGOTokenEncoder.generate_standard_token(
            starting_code=STARTING_CODE,
            key=KEY,
            value=rng.choice([1, 7, 30]),
            count=server,
            mode=mode,
        )
        tokens.append(token)

    def session(cold: bool) -> float:
        clear_chain_cache()
        state = TokenState.initial(1)
        start = time.perf_counter()
        for token in tokens:
            if cold:
                clear_chain_cache()
            decision = process_token(
                token, secret_key=KEY, starting_code=STARTING_CODE, state=state
            )
            assert decision.outcome == "applied", decision.reason
            state = decision.state
        return (time.perf_counter() - start) / len(tokens) * 1e3

    emit(
        bench="in_order_session",
        tokens=len(tokens),
        final_count=server,
        memo_ms_per_token=round(session(cold=False), 3),
        cold_ms_per_token=round(session(cold=True), 3),
    )


if __name__ == "__main__":
    main()
