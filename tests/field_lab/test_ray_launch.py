"""`--ray` without the extra, or with an address that is none, fails in one line (exit 2):
no traceback, no Ray started."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from field_lab.cli import main
from field_lab.lab.ray_launch import EXTRA, ShardActor


@pytest.fixture
def without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import ray` fails, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.mark.usefixtures("without_ray")
def test_ray_without_the_extra_names_the_extra_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--ray", "auto", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("field-lab run: --ray needs Ray, an optional extra")
    assert EXTRA in lines[0]


@pytest.mark.usefixtures("without_ray")
def test_a_ray_address_that_is_none_is_refused_before_ray_is_imported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--ray", "head-node", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "field-lab run: --ray 'head-node': expected auto or the head node's HOST:PORT"
        " (ray start --head prints it)"
    ]


async def test_an_actor_passes_on_its_shards_last_word_and_then_its_end(tmp_path: Path) -> None:
    """The actor's plumbing, outside Ray: orders with a fixture that is none in, the shard's
    one-line error out (a configuration error: exit 2), then the end marker; a line told after
    the end is dropped."""
    actor = ShardActor()
    orders = {"shard": 0, "shards": 1, "url": "http://127.0.0.1:1", "scenario": {"seed": "x"}}
    await actor.start(orders, "{}", str(tmp_path))
    got: list[bytes] = []
    async with asyncio.timeout(30):
        while not got or got[-1]:
            got += await actor.lines()
    *said, end = got
    assert end == b""
    assert len(said) == 1
    doc = json.loads(said[0])
    assert doc == {"t": "error", "code": 2, "message": "fixture is not valid: KeyError: 'devices'"}
    await actor.tell(b'{"sms": ["+255", "PAYG 1: enter 123", 0]}\n')
