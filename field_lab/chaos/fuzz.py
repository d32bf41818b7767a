"""Coverage-guided fuzzing of every decoder with atheris, when it is installed; otherwise the
same targets take seeded random bytes (Hypothesis covers them in the suite either way).

A target may refuse its input only with its own package's error; anything else is a crash.
Run one target: ``python -m field_lab.chaos.fuzz TARGET RUNS`` (atheris exits when done).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from agent_client.protocol.errors import ProtocolError
from agent_client.protocol.frames import decode_downlink, decode_uplink
from meter_sim.meter import Meter
from meter_sim.trace.errors import TraceFormatError
from meter_sim.trace.format import loads
from server_stub.callbacks import parse_callback
from server_stub.errors import RequestError
from server_stub.reports import REPORTS, parse_query

UNAVAILABLE = (
    "atheris is not installed here (pip install atheris; it ships manylinux wheels for "
    "CPython 3.11): fuzzing with seeded random bytes instead"
)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _query(data: bytes) -> None:
    name = REPORTS[data[0] % len(REPORTS)] if data else REPORTS[0]
    parse_query(name, dict(parse_qsl(_text(data[1:]))))


_METERS = (Meter.nexus(b"k" * 16, "full"), Meter.openpaygo(b"k" * 16, 123456789))


def _keypad(data: bytes) -> None:
    for meter in _METERS:
        meter.enter_keycode(_text(data), 1.0)


@dataclass(frozen=True)
class Target:
    call: Callable[[bytes], object]
    refusals: tuple[type[Exception], ...]


TARGETS: dict[str, Target] = {
    "sync_uplink": Target(decode_uplink, (ProtocolError,)),
    "sync_downlink": Target(decode_downlink, (ProtocolError,)),
    "callback": Target(parse_callback, (RequestError,)),
    "report_query": Target(_query, (RequestError,)),
    "keypad": Target(_keypad, ()),
    "trace": Target(lambda data: loads(_text(data)), (TraceFormatError,)),
}


def one_input(target: Target, data: bytes) -> None:
    with contextlib.suppress(*target.refusals):
        target.call(data)


def random_inputs(name: str, runs: int, seed: int = 1) -> int:
    """Seeded random inputs; a crash propagates. Returns the number tried."""
    rng = random.Random(seed)
    target = TARGETS[name]
    for _ in range(runs):
        one_input(target, rng.randbytes(rng.randrange(0, 200)))
    return runs


def atheris_available() -> bool:
    try:
        importlib.import_module("atheris")
    except ImportError:
        return False
    return True


def fuzz(name: str, runs: int) -> dict[str, object]:
    """Fuzz one target in a child process (atheris exits when done); falls back to random."""
    if not atheris_available():
        return {"target": name, "engine": "random", "inputs": random_inputs(name, runs)}
    child = subprocess.run(
        [sys.executable, "-m", "field_lab.chaos.fuzz", name, str(runs)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    done = re.search(r"Done (\d+) runs", child.stderr)
    return {
        "target": name,
        "engine": "atheris",
        "inputs": int(done.group(1)) if done else 0,
        "crashed": child.returncode != 0,
        "tail": child.stderr[-300:] if child.returncode else "",
    }


def main(argv: list[str]) -> None:
    name, runs = argv[0], int(argv[1])
    atheris = importlib.import_module("atheris")
    target = TARGETS[name]
    atheris.instrument_all()  # coverage feedback from every module loaded so far
    atheris.Setup([sys.argv[0], f"-runs={runs}"], lambda data: one_input(target, data))
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) == 3 and atheris_available():
        main(sys.argv[1:])
    else:
        print(json.dumps({"note": UNAVAILABLE}))
