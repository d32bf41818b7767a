"""The public strategies (`meter_sim.strategies`): what they draw, the parsers accept.

Well-formed texts pass the keypad and reach each protocol's validator as a frame of the right
shape; add-credit codes are applied by the validators themselves (the Meter-level "applied
once" property is in test_meter). Hypothesis stays a test-only dependency of the package.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import meter_sim
from meter_sim.actions import Action, AddCredit
from meter_sim.keypad import NEXUS_FULL, NEXUS_SMALL, OPENPAYGO, OPENPAYGO_RESTRICTED, Entry, step
from meter_sim.nexus import NexusState, process_full, process_small
from meter_sim.nexus.full import ACTIVATION_DIGITS, deobscure
from meter_sim.nexus.small import decode
from meter_sim.openpaygo import STANDARD, TokenState, process_token
from meter_sim.openpaygo.digits import Typed, parse_digits
from meter_sim.outcomes import KeyFeedback, Outcome, PaygState
from meter_sim.strategies import (
    AddCreditCode,
    KeypadProtocol,
    add_credit_keycodes,
    keycode_texts,
)
from meter_sim.trace.device import DeviceConfig
from tests.imports import imported_roots

from .helpers import KEY, OPAYGO_KEY, OPAYGO_SC

PADS = {
    "nexus-full": NEXUS_FULL,
    "nexus-small": NEXUS_SMALL,
    "openpaygo": OPENPAYGO,
    "openpaygo-restricted": OPENPAYGO_RESTRICTED,
}
PROTOCOLS: list[KeypadProtocol] = ["nexus-full", "nexus-small", "openpaygo", "openpaygo-restricted"]
FORM_REASONS = ("empty frame", "frame of", "frame holds", "activation frame of")
"""What the Nexus validators say about a frame of the wrong shape (as opposed to content)."""


def typed_frame(protocol: str, text: str) -> str:
    """Press `text` key by key on a fresh keypad; every key must be taken, the last finish it.

    A bare OpenPAYGO token is framed with ``*``/``#`` as `Meter.enter_keycode` frames it.
    """
    pad = PADS[protocol]
    keys = text if text.startswith(pad.start) else f"{pad.start}{text}{pad.end}"
    entry = Entry()
    for key in keys[:-1]:
        done = step(pad, entry, key, 0.0)
        assert (done.feedback, done.finished) == (KeyFeedback.ACCEPTED, None), key
        entry = done.entry
    last = step(pad, entry, keys[-1], 0.0)
    assert last.finished is not None
    return last.finished


@pytest.mark.parametrize("protocol", PROTOCOLS)
@given(data=st.data())
def test_keycode_texts_are_frames_the_validators_parse(
    protocol: KeypadProtocol, data: st.DataObject
) -> None:
    text = data.draw(keycode_texts(protocol))
    frame = typed_frame(protocol, text)
    match protocol:
        case "nexus-full":
            assert len(frame) == ACTIVATION_DIGITS
            assert len(deobscure(frame)) == ACTIVATION_DIGITS
            decision = process_full(
                frame, secret_key=KEY, state=NexusState(), payg=PaygState.ENABLED
            )
            assert not decision.reason.startswith(FORM_REASONS)
        case "nexus-small":
            cid, _, body, mac = decode(frame)
            assert (0 <= cid < 64, 0 <= body < 256, 0 <= mac < 4096) == (True, True, True)
            decision = process_small(
                frame, secret_key=KEY, state=NexusState(), payg=PaygState.ENABLED
            )
            assert not decision.reason.startswith(FORM_REASONS)
        case _:
            typed = parse_digits(frame, restricted=protocol == "openpaygo-restricted")
            assert isinstance(typed, Typed)
            assert typed.fmt is STANDARD


DEVICES = [
    DeviceConfig("nexus-full", KEY),
    DeviceConfig("nexus-small", KEY),
    DeviceConfig("openpaygo", OPAYGO_KEY, starting_code=OPAYGO_SC),
    DeviceConfig("openpaygo-restricted", OPAYGO_KEY, starting_code=OPAYGO_SC),
    DeviceConfig("openpaygo", OPAYGO_KEY, starting_code=7, count=40, time_divider=3),
]


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: f"{d.protocol}-{d.count}")
@settings(max_examples=25)
@given(data=st.data())
def test_add_credit_keycodes_are_applied_by_the_validators(
    device: DeviceConfig, data: st.DataObject
) -> None:
    code = data.draw(add_credit_keycodes(device))
    assert isinstance(code, AddCreditCode)
    frame = typed_frame(device.protocol, code.text)
    outcome, action, reason = validate(device, frame)
    assert outcome is Outcome.APPLIED, reason
    assert action == AddCredit(code.credit_s)


def validate(device: DeviceConfig, frame: str) -> tuple[Outcome, Action | None, str]:
    """The device's validator on a fresh state, without the Meter around it."""
    assert device.key is not None
    if device.protocol.startswith("nexus"):
        process = process_full if device.protocol == "nexus-full" else process_small
        nexus = process(frame, secret_key=device.key, state=NexusState(), payg=PaygState.DISABLED)
        return nexus.outcome, nexus.action, nexus.reason
    assert device.starting_code is not None
    token = process_token(
        frame,
        secret_key=device.key,
        starting_code=device.starting_code,
        state=TokenState.initial(device.count),
        restricted_digits=device.protocol == "openpaygo-restricted",
        time_divider=device.time_divider,
    )
    return token.outcome, token.action, token.reason


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: keycode_texts("nexus-medium"), "protocol must be one of"),  # type: ignore[arg-type]
        (lambda: add_credit_keycodes("nexus-full"), "must be a DeviceConfig"),  # type: ignore[arg-type]
        (lambda: add_credit_keycodes(DeviceConfig("nexus-full")), "16-byte secret key"),
        (lambda: add_credit_keycodes(DeviceConfig("nexus-full", b"short")), "16-byte"),
        (lambda: add_credit_keycodes(DeviceConfig("nexus-tiny", KEY)), "protocol must be"),
        (lambda: add_credit_keycodes(DeviceConfig("openpaygo", OPAYGO_KEY)), "starting_code"),
        (
            lambda: add_credit_keycodes(
                DeviceConfig("openpaygo", OPAYGO_KEY, starting_code=1, count=0)
            ),
            "device.count must be",
        ),
        (
            lambda: add_credit_keycodes(
                DeviceConfig("openpaygo", OPAYGO_KEY, starting_code=1, time_divider=256)
            ),
            "time_divider must be",
        ),
    ],
)
def test_bad_arguments_are_refused_when_the_strategy_is_made(call: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        call()  # type: ignore[operator]


def test_only_the_strategies_module_imports_hypothesis() -> None:
    modules = imported_roots(Path(meter_sim.__file__).parent)
    importers = {m for m, roots in modules.items() if "hypothesis" in roots}
    assert importers == {"strategies.py"}
    for module, roots in modules.items():
        ours = roots & {"agent_client", "server_stub", "field_lab", "tests"}
        assert not ours, f"{module} imports {ours}: meter_sim imports nothing else of ours"
