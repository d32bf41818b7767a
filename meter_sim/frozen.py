"""Positional constructors for frozen slotted dataclasses, for a meter's per-code path.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`, about twice the
cost of setting the slots directly; a validated code builds up to four such values (state,
action, credit, result; the decision is a named tuple). `maker(cls)` returns a function taking
every field in order that sets the slots directly (still ~900 instructions a field on 3.11:
each is a descriptor call). It runs no `__post_init__`: use it only where the values are
valid by construction.
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
    names = [f"v{i}" for i in range(len(dataclasses.fields(cls)))]
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for name, field in zip(names, dataclasses.fields(cls), strict=True):
        scope[f"set_{name}"] = vars(cls)[field.name].__set__  # the slot's own descriptor
    # One straight-line function per class, as dataclasses writes its own __init__: a loop
    # over the setters would cost what this saves.
    body = "".join(f"    set_{name}(obj, {name})\n" for name in names)
    exec(f"def make({', '.join(names)}):\n    obj = new(cls)\n{body}    return obj\n", scope)
    made: Callable[..., T] = scope["make"]
    return made
