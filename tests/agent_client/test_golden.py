"""Golden bytes of the sync contract, version by version: every frame and entry kind, the
signing string, the provisioning body, the keycode wire numbers and the operation digests.

Each case is a value and the exact bytes docs/sync-protocol.md promises for it, stored in
``tests/golden/sync/v<N>/<case>.hex``. Encoding the value must give those bytes and decoding
the bytes must give the value back, so any change that alters a byte on the wire fails here
(and must come with a new protocol version, whose fixtures go in a new folder). Every version
the platform still serves (`SERVED`: v1 for handsets in the field, and v2) is checked both ways
under its own version number; a version's frames read as another version are refused as
``unsupported_version``, never misread.

Writing them (only for a new version or a new case): ``python -m tests.agent_client.test_golden``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_client.protocol import envelope
from agent_client.protocol.auth import HandsetKey, signing_bytes
from agent_client.protocol.errors import FrameError
from agent_client.protocol.frames import (
    DownlinkFrame,
    Escrow,
    EscrowRevoked,
    Keycode,
    Payment,
    Plan,
    Reason,
    Stock,
    Unknown,
    UplinkFrame,
    decode_downlink,
    decode_uplink,
    encode_downlink,
    encode_uplink,
)
from agent_client.protocol.keycodes import KeycodeFormat, keycode_text, pack_keycode
from agent_client.protocol.ops import Kind, Operation

GOLDEN = Path(__file__).parents[1] / "golden" / "sync"
AT = 1_795_000_000  # handset clock, unix seconds
MS = 1_795_000_000_123  # server clock, unix milliseconds
HANDSET = 7
SEED = bytes(range(32))  # the example handset key (docs/sync-protocol.md, Authentication)


@dataclass(frozen=True)
class Case:
    value: object
    encode: Callable[[object], bytes]
    decode: Callable[[bytes], object]


def op(seq: int, kind: Kind, *fields: int | str, at: int = AT) -> Operation:
    return Operation.make(seq, kind, at, *fields)


def up(*ops: Operation, cursor: int = 0) -> UplinkFrame:
    return UplinkFrame(HANDSET, cursor, ops)


def down(
    acked: tuple[int, ...] = (),
    rejected: tuple[tuple[int, Reason], ...] = (),
    first: int = 1,
    entries: tuple[object, ...] = (),
    more: bool = False,
) -> DownlinkFrame:
    return DownlinkFrame(MS, acked, rejected, first, entries, more)


def uplink(frame: UplinkFrame) -> Case:
    return Case(frame, lambda f: encode_uplink(f), decode_uplink)


def downlink(frame: DownlinkFrame) -> Case:
    return Case(frame, lambda f: encode_downlink(f), decode_downlink)


def text(value: str, encode: Callable[[str], bytes]) -> Case:
    """Bytes with no decoder of their own (signing string, JSON body): decoded as UTF-8."""
    return Case(value, encode, lambda b: b.decode())


REGISTER = op(12, Kind.REGISTER_CUSTOMER, "Esi Mensah", "+233200000001")
SALE = op(13, Kind.RECORD_SALE, 12, 10_000_003, 1, 700)
PAYMENT = op(14, Kind.RECORD_PAYMENT, 10_000_003, 300, at=AT + 60)
EXAMPLE_BODY = encode_uplink(up(REGISTER, SALE, PAYMENT, cursor=40))
KEYCODES = {
    KeycodeFormat.NEXUS_FULL: "*74795183827441#",
    KeycodeFormat.NEXUS_SMALL: "123452345234523",
    KeycodeFormat.OPENPAYGO: "123456789",
    KeycodeFormat.OPENPAYGO_RESTRICTED: "123412341234123",
}


KEYCODE = Keycode(13, 10_000_003, KeycodeFormat.NEXUS_FULL, 74_795_183_827_441, 604_800)
OFFLINE_SALE = op(15, Kind.RECORD_SALE, 12, 10_000_004, 1, 700, 6)
"""An offline sale (v2 addition, an appended field): it released the code reserved at id 6."""
ESCROW = Escrow(10_000_004, 6, KeycodeFormat.NEXUS_FULL, 74_795_183_827_441, 86_400)


def frame_cases() -> dict[str, Case]:
    """The frames (v2 carries the same frames, version field 1, inside its envelope)."""
    return {
        "uplink_pull": uplink(up(cursor=40)),
        "uplink_register_customer": uplink(up(REGISTER)),
        "uplink_record_sale": uplink(up(SALE)),
        "uplink_record_payment": uplink(up(PAYMENT)),
        "uplink_example": uplink(up(REGISTER, SALE, PAYMENT, cursor=40)),
        "uplink_compressed": uplink(
            up(*(op(100 + i, Kind.RECORD_PAYMENT, 10_000_003, 300, at=AT + i) for i in range(40))),
        ),
        "downlink_empty": downlink(down(first=41)),
        "downlink_example": downlink(down((12, 13, 14), (), 41, (KEYCODE,))),
        "downlink_done_runs": downlink(
            down((3, 4, 5, 10, 11), ((9, Reason.NOT_IN_STOCK), (20, Reason.BAD_FIELD)), 41),
        ),
        "downlink_entry_keycode": downlink(down(first=41, entries=(KEYCODE,))),
        "downlink_entry_payment": downlink(
            down(first=41, entries=(Payment(10_000_003, 300, "MM-8F3K2"),)),
        ),
        "downlink_entry_stock_in": downlink(
            down(first=41, entries=(Stock(10_000_004, KeycodeFormat.NEXUS_SMALL, True),)),
        ),
        "downlink_entry_stock_out": downlink(
            down(first=41, entries=(Stock(10_000_003, KeycodeFormat.NEXUS_FULL, False),)),
        ),
        "downlink_entry_plan": downlink(
            down(first=41, entries=(Plan(1, "solar-home-10w", 100),)),
        ),
        "downlink_entry_unknown_kind": downlink(down(first=41, entries=(Unknown(9),))),
        "downlink_more_compressed": downlink(
            down(
                first=41,
                more=True,
                entries=tuple(
                    Stock(10_000_100 + i, KeycodeFormat.NEXUS_FULL, True) for i in range(64)
                ),
            ),
        ),
    }


def raw(value: bytes) -> Case:
    """Bytes that are their own value (a key, a MAC input, a whole request body)."""
    return Case(value, lambda b: b, lambda b: b)


def v2_cases() -> dict[str, Case]:
    key = envelope.sync_key(SEED)
    frame = EXAMPLE_BODY
    single = encode_uplink(up(PAYMENT))
    return {
        "sync_key": raw(key),
        "mac_input": raw(envelope.mac_bytes(HANDSET, MS, frame)),
        "body_example": raw(envelope.seal(key, HANDSET, MS, frame)),
        "body_record_payment": raw(envelope.seal(key, HANDSET, MS, single)),
        **escrow_cases(),
    }


def escrow_cases() -> dict[str, Case]:
    """Offline sales from an escrow, added in v2's time by appending (frames stay version 1)."""
    return {
        "content_record_sale_offline": Case(
            OFFLINE_SALE, lambda o: o.content(), lambda b: Operation.from_content(15, b)
        ),
        "uplink_record_sale_offline": uplink(up(OFFLINE_SALE)),
        "downlink_entry_escrow": downlink(down(first=41, entries=(ESCROW,))),
        "downlink_entry_escrow_revoked": downlink(
            down(first=41, entries=(EscrowRevoked(10_000_004, 6),))
        ),
        "downlink_escrow_refused": downlink(
            down(
                (),
                ((15, Reason.ESCROW_RELEASED_TWICE), (16, Reason.ESCROW_REVOKED)),
                41,
            )
        ),
    }


def v1_cases() -> dict[str, Case]:
    cases = {
        **frame_cases(),
        "signing_string": text(
            signing_bytes("POST", "/v1/sync", EXAMPLE_BODY, HANDSET, MS).decode(),
            lambda s: s.encode(),
        ),
        "signing_string_empty_body": text(
            signing_bytes("POST", "/v1/sync", b"", HANDSET, MS).decode(), lambda s: s.encode()
        ),
        "x_sig": text(
            HandsetKey.from_seed(SEED).headers("POST", "/v1/sync", EXAMPLE_BODY, HANDSET, MS)[
                "X-Sig"
            ],
            lambda s: s.encode(),
        ),
        "provision_request": text(
            json.dumps(
                {
                    "agent": "ama",
                    "code": "secret",
                    "public_key": HandsetKey.from_seed(SEED).public.hex(),
                }
            ),
            lambda s: s.encode(),
        ),
    }
    for fmt, code in KEYCODES.items():
        number = pack_keycode(fmt, code)
        cases[f"keycode_{fmt.name.lower()}"] = Case(
            number,
            lambda n, f=fmt: keycode_text(f, n).encode(),
            lambda b, f=fmt: pack_keycode(f, b.decode()),
        )
    for name, operation in (("register_customer", REGISTER), ("record_sale", SALE)):
        cases[f"content_{name}"] = Case(
            operation,
            lambda o: o.content(),
            lambda b, s=operation.seq: Operation.from_content(s, b),
        )
    return cases


VERSIONS: dict[int, Callable[[], dict[str, Case]]] = {1: v1_cases, 2: v2_cases}
"""Every version the contract has had; a new version adds its own cases and folder."""
SERVED = {1, 2}
"""Versions the platform still speaks (docs/sync-protocol.md, Schema evolution)."""
CURRENT = 2


def fixture_path(version: int, name: str) -> Path:
    return GOLDEN / f"v{version}" / f"{name}.hex"


def read(version: int, name: str) -> bytes:
    return bytes.fromhex(fixture_path(version, name).read_text())


ALL = [(v, name) for v, cases in VERSIONS.items() for name in cases()]


@pytest.mark.parametrize(("version", "name"), ALL)
def test_golden_bytes_both_ways(version: int, name: str) -> None:
    case = VERSIONS[version]()[name]
    golden = read(version, name)
    if version not in SERVED:  # retired: its frames are refused, never misread
        if name.startswith(("uplink", "downlink")):
            with pytest.raises(FrameError, match="version") as info:
                case.decode(golden)
            assert info.value.code == "unsupported_version"
        return
    assert case.encode(case.value) == golden
    assert case.decode(golden) == case.value


def test_a_v1_body_is_not_a_v2_envelope() -> None:
    with pytest.raises(FrameError, match="version") as info:
        envelope.open_envelope(read(1, "uplink_example"))
    assert info.value.code == "unsupported_version"


def test_a_v2_body_opens_to_its_claim_and_frame() -> None:
    body = read(2, "body_example")
    claim, frame = envelope.open_envelope(body)
    assert (claim.handset, claim.ts_ms) == (HANDSET, MS)
    assert frame == read(1, "uplink_example")  # v2 carries v1's frames
    envelope.check_tag(claim, read(2, "sync_key"), frame)


def test_every_fixture_file_is_a_case() -> None:
    on_disk = {(int(p.parent.name[1:]), p.stem) for p in GOLDEN.glob("v*/*.hex")}
    assert on_disk == set(ALL)


def test_fixtures_cover_every_operation_and_entry_kind() -> None:
    names = set(v1_cases())
    assert {f"uplink_{k.name.lower()}" for k in Kind} <= names
    assert {"downlink_entry_keycode", "downlink_entry_payment", "downlink_entry_plan"} <= names
    assert {"downlink_entry_stock_in", "downlink_entry_stock_out"} <= names
    assert read(1, "uplink_compressed")[0] in (0xC4, 0xC5, 0xC6)  # a msgpack bin: deflated
    assert read(1, "downlink_more_compressed")[0] in (0xC4, 0xC5, 0xC6)


def write() -> None:
    """(Re)write the fixtures of the current version from the cases (review the diff!); files
    that exist are kept as they are (a shipped fixture never changes)."""
    for name, case in VERSIONS[CURRENT]().items():
        path = fixture_path(CURRENT, name)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(case.encode(case.value).hex() + "\n")
        print(path, file=sys.stderr)


if __name__ == "__main__":
    write()


DOC = Path(__file__).parents[2] / "docs" / "sync-protocol.md"
IN_FULL = (
    "uplink_pull",
    "uplink_register_customer",
    "uplink_record_sale",
    "uplink_record_payment",
    "uplink_example",
    "downlink_example",
    "downlink_done_runs",
    "content_register_customer",
)
ENTRY_ROWS = ("keycode", "payment", "stock_in", "stock_out", "plan")


def test_the_doc_shows_the_golden_bytes() -> None:
    """The examples of docs/sync-protocol.md are these fixtures, byte for byte."""
    doc = DOC.read_text()
    flat = "".join(doc.split())
    for name in IN_FULL:
        assert read(1, name).hex() in flat, name
    for entry in ENTRY_ROWS:  # the row inside [1, server_ms, [], [], 41, [row], 0]
        assert read(1, f"downlink_entry_{entry}")[15:-1].hex() in flat, entry
    signing = read(1, "signing_string").decode().replace("\n", "\\n")
    assert signing in doc
    for name in ("x_sig", "provision_request"):
        assert read(1, name).decode() in doc, name
    for name in ("sync_key", "body_record_payment"):  # v2's envelope
        assert read(2, name).hex() in flat, name
    for name in ("content_record_sale_offline", "uplink_record_sale_offline"):
        assert read(2, name).hex() in flat, name
    assert read(2, "downlink_escrow_refused").hex() in flat
    for entry in ("escrow", "escrow_revoked"):
        assert read(2, f"downlink_entry_{entry}")[15:-1].hex() in flat, entry
