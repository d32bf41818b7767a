"""The firmware knobs travel with the device description: `meter-sim` options set them, a
trace header records them (only when set, so older traces read the same), and the meter a
replay builds from the header answers as the recorded one did."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meter_sim.outcomes import Outcome
from meter_sim.trace.device import DeviceConfig
from meter_sim.trace.errors import TraceFormatError
from meter_sim.trace.fields import Fields

KEY = bytes(range(16))
SMALL_WITH_TRAILING_KEY = "1235255342552422"  # a genuine ADD 7 days plus a stray `2`


def reread(config: DeviceConfig) -> DeviceConfig:
    doc = config.to_json(include_secret=True)
    return DeviceConfig.from_fields(Fields(doc, path="device", source="test", line=None))


def test_knobs_round_trip_and_defaults_stay_off_the_header() -> None:
    plain = DeviceConfig("nexus-small", KEY)
    assert not {"strict", "allow_demo", "preset", "quirks"} & set(plain.to_json())
    tuned = DeviceConfig(
        "nexus-full", KEY, strict=True, allow_demo=False, quirks=("id16-truncation",)
    )
    assert reread(tuned) == tuned
    opaygo = DeviceConfig(
        "openpaygo",
        KEY,
        starting_code=123456789,
        preset="c-example",
        quirks=("c-used-bitmap-shift",),
    )
    assert reread(opaygo) == opaygo


def test_the_built_meter_follows_the_recorded_policy() -> None:
    firmware = reread(DeviceConfig("nexus-small", KEY)).build()
    strict = reread(DeviceConfig("nexus-small", KEY, strict=True)).build()
    assert firmware.enter_keycode(SMALL_WITH_TRAILING_KEY, 0).outcome is Outcome.APPLIED
    assert strict.enter_keycode(SMALL_WITH_TRAILING_KEY, 0).outcome is Outcome.INVALID


def test_an_unknown_quirk_in_a_header_is_named() -> None:
    doc = DeviceConfig("nexus-full", KEY).to_json(include_secret=True) | {"quirks": "telepathy"}
    with pytest.raises(TraceFormatError, match="unknown 'telepathy'"):
        DeviceConfig.from_fields(Fields(doc, path="device", source="test", line=None))


@pytest.mark.parametrize(("flags", "answer"), [((), "applied"), (("--strict",), "invalid")])
def test_meter_sim_session_takes_the_firmware_options(flags: tuple[str, ...], answer: str) -> None:
    """The payg-id confirmation form: nexus-embedded applies it, strict refuses it."""
    command = [sys.executable, "-m", "meter_sim.cli", "--protocol", "nexus-full", "--payg-id"]
    done = subprocess.run(
        [*command, "12345678", "--key", KEY.hex(), *flags],
        input=b"*712345678#\n:quit\n",
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert answer in done.stdout.decode()


def test_meter_sim_refuses_an_unknown_quirk() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meter_sim.cli", "session", "--quirk", "telepathy"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"--quirk" in done.stderr
