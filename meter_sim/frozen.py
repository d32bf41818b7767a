"""Positional constructors for frozen slotted dataclasses, for a meter's per-code path.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`, about twice the
cost of setting the slots directly; a validated code builds five such values (state, action,
decision, credit, result), so this is a tenth of a validation. `maker(cls)` returns a
function taking every field in order that sets the slots directly. It runs no
`__post_init__`: use it only where the values are valid by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """A positional constructor of `cls` (a frozen dataclass with slots) that skips checks."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    setters: list[Callable[[Any, Any], None]] = [
        vars(cls)[field.name].__set__ for field in dataclasses.fields(cls)
    ]
    new = object.__new__
    if len(setters) == 1:
        (s1,) = setters

        def make1(a: object) -> T:
            obj: T = new(cls)
            s1(obj, a)
            return obj

        return make1
    if len(setters) == 2:
        s1, s2 = setters

        def make2(a: object, b: object) -> T:
            obj: T = new(cls)
            s1(obj, a)
            s2(obj, b)
            return obj

        return make2
    if len(setters) == 4:
        s1, s2, s3, s4 = setters

        def make4(a: object, b: object, c: object, d: object) -> T:
            obj: T = new(cls)
            s1(obj, a)
            s2(obj, b)
            s3(obj, c)
            s4(obj, d)
            return obj

        return make4
    if len(setters) == 5:
        s1, s2, s3, s4, s5 = setters

        def make5(a: object, b: object, c: object, d: object, e: object) -> T:
            obj: T = new(cls)
            s1(obj, a)
            s2(obj, b)
            s3(obj, c)
            s4(obj, d)
            s5(obj, e)
            return obj

        return make5
    raise TypeError(f"no maker for {len(setters)} fields ({cls.__name__})")
