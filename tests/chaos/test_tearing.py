"""Power cuts mid-save for all three protocols (a sample of byte offsets; `make chaos` cuts at
every byte), and the checker finding a medium driver that writes over the image it replaces."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.chaos.tearing import InPlace, PowerLost, TornMedium, devices, main, tear
from meter_sim.storage import MemoryStorage

PROTOCOLS = sorted(devices())
SAMPLE = 9
"""Every ninth byte of every save: about fifty cuts a protocol, a third of a second."""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cut_anywhere_in_a_save_reboots_to_the_old_or_the_new_state(protocol: str) -> None:
    device = devices()[protocol]
    found = tear(device, stride=SAMPLE)
    assert found.saves == len(device.codes) + 1  # the first boot, then every code
    assert found.cuts >= found.bytes_saved // SAMPLE > 0
    assert found.violations == 0, found.examples
    assert found.old_state + found.new_state == found.cuts


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_checker_finds_a_driver_that_writes_in_place(protocol: str) -> None:
    found = tear(devices()[protocol], driver=InPlace, stride=SAMPLE)
    assert found.violations > 0
    assert found.code_reused > 0  # the torn image is refused: factory state forgets used codes
    assert found.examples


writes = st.lists(st.tuples(st.integers(0, 40), st.binary(min_size=1, max_size=30)), max_size=6)


@given(initial=st.binary(max_size=60), plan=writes, budget=st.integers(0, 200))
def test_a_torn_medium_holds_exactly_the_bytes_before_the_cut(
    initial: bytes, plan: list[tuple[int, bytes]], budget: int
) -> None:
    torn, expected, left = TornMedium(initial, budget), MemoryStorage(initial), budget
    for offset, data in plan:
        try:
            torn.write(offset, data)
        except PowerLost:
            expected.write(offset, data[:left])
            assert torn.written == budget < sum(len(d) for _, d in plan)
            break
        expected.write(offset, data)
        left -= len(data)
    else:
        assert torn.written == sum(len(d) for _, d in plan) <= budget
    assert torn.read() == expected.read()


def test_the_command_prints_counts_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stride", "31", "--protocol", "nexus_small"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    figures = json.loads(line)
    assert figures["protocol"] == "nexus_small"
    assert figures["violations"] == 0 < figures["cuts"]
