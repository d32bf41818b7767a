"""`nv.classify`: what a medium holds, judged before a tool lets a meter write to it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import Meter
from meter_sim.errors import ConfigError
from meter_sim.nv import (
    Image,
    Kind,
    NVStore,
    classify,
    crc16,
    key_fingerprint,
    kind_label,
    slot_size,
)
from meter_sim.storage import MemoryStorage

from .helpers import KEY, OPAYGO_KEY, OPAYGO_SC

NEXUS = key_fingerprint(KEY)
OPAYGO = key_fingerprint(OPAYGO_KEY, OPAYGO_SC)


def nexus_image(protocol: str = "full") -> bytes:
    storage = MemoryStorage()
    Meter.nexus(KEY, protocol, storage=storage)
    return storage.read()


def opaygo_image() -> bytes:
    storage = MemoryStorage()
    Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, storage=storage)
    return storage.read()


@pytest.mark.parametrize("medium", [b"", b"\x00" * 62, b"\xff" * 200])
def test_erased_media_are_empty(medium: bytes) -> None:
    assert classify(medium, Kind.NEXUS_FULL, NEXUS)[0] is Image.EMPTY


def test_images_written_by_a_meter_are_valid_for_their_kind_only() -> None:
    assert classify(nexus_image(), Kind.NEXUS_FULL, NEXUS)[0] is Image.VALID
    assert classify(nexus_image("small"), Kind.NEXUS_SMALL, NEXUS)[0] is Image.VALID
    assert classify(opaygo_image(), Kind.OPENPAYGO, OPAYGO)[0] is Image.VALID
    verdict, why = classify(nexus_image(), Kind.OPENPAYGO, OPAYGO)
    assert verdict is Image.OTHER_KIND
    assert "nexus-full" in why


def test_an_image_for_another_key_or_starting_code_is_named_so() -> None:
    verdict, why = classify(nexus_image(), Kind.NEXUS_FULL, key_fingerprint(bytes(16)))
    assert verdict is Image.OTHER_KEY
    assert "another device key" in why
    other_code = key_fingerprint(OPAYGO_KEY, OPAYGO_SC + 1)
    assert classify(opaygo_image(), Kind.OPENPAYGO, other_code)[0] is Image.OTHER_KEY


def test_a_format_1_image_is_named_as_such() -> None:
    head = b"PGNV\x01\x01" + (48).to_bytes(2, "little") + (7).to_bytes(4, "little")
    slot = head + bytes(48)
    slot += crc16(slot).to_bytes(2, "little")
    verdict, why = classify(slot * 2, Kind.NEXUS_FULL, NEXUS)
    assert verdict is Image.OLD_FORMAT
    assert "format-1" in why
    # The magic alone is not enough: a spoiled version-1 slot is just not our image.
    assert classify(slot[:-1] + b"\x00", Kind.NEXUS_FULL, NEXUS)[0] is Image.FOREIGN


def test_a_text_file_is_foreign() -> None:
    verdict, why = classify(b"hello, these are someone's notes\n", Kind.NEXUS_FULL, NEXUS)
    assert verdict is Image.FOREIGN
    assert "magic" in why


def test_a_long_file_starting_with_the_magic_is_foreign() -> None:
    medium = nexus_image() + b"more" * 100
    assert classify(medium, Kind.NEXUS_FULL, NEXUS)[0] is Image.FOREIGN


def test_an_image_with_both_slots_spoiled_is_corrupt_and_one_spoiled_slot_recovers() -> None:
    storage = MemoryStorage()
    meter = Meter.nexus(KEY, storage=storage)
    meter.set_restricted(True, 1.0)  # a second save: both slots hold an image
    two = bytearray(storage.read())
    size = slot_size(Kind.NEXUS_FULL)
    assert len(two) == 2 * size
    two[20] ^= 0xFF
    assert classify(bytes(two), Kind.NEXUS_FULL, NEXUS)[0] is Image.VALID
    two[size + 20] ^= 0xFF
    verdict, why = classify(bytes(two), Kind.NEXUS_FULL, NEXUS)
    assert verdict is Image.CORRUPT
    assert "CRC" in why


def test_kinds_are_named_in_messages() -> None:
    assert Kind.NEXUS_SMALL.label == "nexus-small"
    assert kind_label(9) == "unknown kind 9"
    store = NVStore(MemoryStorage(opaygo_image()), Kind.NEXUS_FULL, NEXUS)
    with pytest.raises(ConfigError, match="kind openpaygo, not nexus-full"):
        store.load()


@given(st.binary(max_size=200), st.sampled_from(Kind))
def test_classify_answers_any_bytes(medium: bytes, kind: Kind) -> None:
    verdict, why = classify(medium, kind, NEXUS)
    assert isinstance(verdict, Image)
    assert why
