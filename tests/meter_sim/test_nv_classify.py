"""`nv.classify`: what a medium holds, judged before a tool lets a meter write to it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import Meter
from meter_sim.errors import ConfigError
from meter_sim.nv import Image, Kind, NVStore, classify, kind_label, slot_size
from meter_sim.storage import MemoryStorage

from .helpers import KEY, OPAYGO_KEY, OPAYGO_SC


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
    assert classify(medium, Kind.NEXUS_FULL)[0] is Image.EMPTY


def test_images_written_by_a_meter_are_valid_for_their_kind_only() -> None:
    assert classify(nexus_image(), Kind.NEXUS_FULL)[0] is Image.VALID
    assert classify(nexus_image("small"), Kind.NEXUS_SMALL)[0] is Image.VALID
    assert classify(opaygo_image(), Kind.OPENPAYGO)[0] is Image.VALID
    verdict, why = classify(nexus_image(), Kind.OPENPAYGO)
    assert verdict is Image.OTHER_KIND
    assert "nexus-full" in why


def test_a_text_file_is_foreign() -> None:
    verdict, why = classify(b"hello, these are someone's notes\n" * 3, Kind.NEXUS_FULL)
    assert verdict is Image.FOREIGN
    assert "PGNV" in why


def test_a_long_file_starting_with_the_magic_is_foreign() -> None:
    medium = nexus_image() + b"more" * 100
    assert classify(medium, Kind.NEXUS_FULL)[0] is Image.FOREIGN


def test_an_image_with_both_slots_spoiled_is_corrupt_and_one_spoiled_slot_recovers() -> None:
    storage = MemoryStorage()
    meter = Meter.nexus(KEY, storage=storage)
    meter.set_restricted(True, 1.0)  # a second save: both slots hold an image
    two = bytearray(storage.read())
    size = slot_size(Kind.NEXUS_FULL)
    assert len(two) == 2 * size
    two[20] ^= 0xFF
    assert classify(bytes(two), Kind.NEXUS_FULL)[0] is Image.VALID
    two[size + 20] ^= 0xFF
    verdict, why = classify(bytes(two), Kind.NEXUS_FULL)
    assert verdict is Image.CORRUPT
    assert "CRC" in why


def test_kinds_are_named_in_messages() -> None:
    assert Kind.NEXUS_SMALL.label == "nexus-small"
    assert kind_label(9) == "unknown kind 9"
    store = NVStore(MemoryStorage(opaygo_image()), Kind.NEXUS_FULL)
    with pytest.raises(ConfigError, match="kind openpaygo, not nexus-full"):
        store.load()


@given(st.binary(max_size=200), st.sampled_from(Kind))
def test_classify_answers_any_bytes(medium: bytes, kind: Kind) -> None:
    verdict, why = classify(medium, kind)
    assert isinstance(verdict, Image)
    assert why
