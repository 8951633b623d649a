"""Building a frozen dataclass from fields already checked, without its ``__init__``.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(frozen forbids plain assignment): about 0.1 µs a field, 1.7 µs for a header, paid for each
of the objects a node builds per envelope it decodes (docs/performance.md, "Decode +
verify"). Filling the new instance's ``__dict__`` at once gives the same object: equal,
same hash, and still frozen to everyone else. For hot decoders only, which pass every
field (tests/core/test_frozen.py holds each such class to its ``__init__``).
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

_new = object.__new__


def build(cls: type[T], /, **fields: Any) -> T:
    """``cls(**fields)`` for a dataclass without ``__post_init__``, every field given."""
    obj = _new(cls)
    obj.__dict__.update(fields)
    return obj
