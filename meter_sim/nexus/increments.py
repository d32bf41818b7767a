"""Small-protocol increment ids to days, as data: one row per linear segment.

The backend floors a day count to its bucket; the device credits the bucket's value, so e.g.
an ADD of 181 days arrives as 183 and a SET of 721 days as 736.
"""

from __future__ import annotations

from typing import NamedTuple


class Segment(NamedTuple):
    first: int
    last: int
    first_days: int
    step: int


ADD_DAYS: tuple[Segment, ...] = (
    Segment(0, 179, 1, 1),  # 1..180 days
    Segment(180, 254, 183, 3),  # 183..405 days
)
SET_DAYS: tuple[Segment, ...] = (
    Segment(0, 89, 1, 1),  # 1..90
    Segment(90, 134, 92, 2),  # 92..180
    Segment(135, 179, 184, 4),  # 184..360
    Segment(180, 224, 368, 8),  # 368..720
    Segment(225, 239, 736, 16),  # 736..960
)

UNLOCK = 255
"""ADD or SET increment 255: unlock for good."""
SET_LOCK = 254
"""SET increment 254: credit to 0."""
SET_CLEAR_RESTRICTED = 253
"""SET increment 253 (CustomCommandSmallMessage): clear the restricted flag."""
SET_RESERVED = range(240, 253)
"""SET increments the backend never emits (the device would set credit 0)."""


def days_for(table: tuple[Segment, ...], increment: int) -> int | None:
    """Days for an increment id, or None if the table has no row for it."""
    for segment in table:
        if segment.first <= increment <= segment.last:
            return segment.first_days + (increment - segment.first) * segment.step
    return None


def increment_for(table: tuple[Segment, ...], days: int) -> int | None:
    """The increment id that carries `days`, floored to its bucket as the backend does.

    A segment with step s covers the days above the previous segment's top, each bucket of s
    days mapping to one increment (credited as the bucket's top). None: out of the table.
    """
    for segment in table:
        low = segment.first_days - segment.step + 1
        high = segment.first_days + (segment.last - segment.first) * segment.step
        if low <= days <= high:
            return segment.first + (days - low) // segment.step
    return None
