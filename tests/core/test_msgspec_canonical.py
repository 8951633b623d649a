"""msgspec's encoder writes what ``codec.pack`` writes (sorted keys aside, which the header's
and tag's struct field orders give): the shortest int, str, bin, array and map forms. The
header's fast decoding (``envelope._decode_usual_header``) proves the canonical form by
re-encoding with msgspec and comparing bytes, so this equality is what makes that proof
hold (docs/performance.md, "msgspec for the usual header")."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, envelope
from tests.core.factories import Officer, seal_from

# Every length and value at the edge of a msgpack form (fixint/uint8/16/32/64, negative
# fixint/int8/16/32/64, fixstr/str8/16/32, bin8/16/32, fixarray/array16/32, fixmap/map16).
EDGE_INTS = [0, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 64) - 1,
             -1, -32, -33, -128, -129, -32768, -32769, -(1 << 31), -(1 << 31) - 1,
             -(1 << 63)]
EDGE_LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]


def _same(value: Any) -> None:
    assert msgspec.msgpack.encode(value) == codec.pack(value)


@pytest.mark.parametrize("value", EDGE_INTS)
def test_ints_at_every_form_edge(value: int) -> None:
    _same(value)


@pytest.mark.parametrize("length", EDGE_LENGTHS)
def test_str_bin_array_and_map_at_every_length_edge(length: int) -> None:
    _same("x" * length)
    _same(b"x" * length)
    _same([1] * length)
    _same({f"{i:06d}": None for i in range(min(length, 70000))})


leaves = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text()
          | st.binary())
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=20)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=8),
                      max_leaves=60)


@settings(max_examples=500, deadline=None)
@given(value=values)
def test_random_values_encode_alike(value: Any) -> None:
    """Dicts sorted first: ``codec.pack`` sorts, msgspec keeps the order it is given."""
    def sort(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: sort(v[k]) for k in sorted(v)}
        return [sort(x) for x in v] if isinstance(v, list) else v
    _same(sort(value))


def test_the_header_structs_encode_a_sealed_header_back_to_its_bytes() -> None:
    """The struct's field order is the canonical one: a canonical header round-trips."""
    for sealed in (seal_from(Officer("nl/jdevries"), [Officer("be/mpeeters")]),
                   seal_from(Officer("be/mpeeters"), [Officer("lu/cweber"),
                                                      Officer("nl/jdevries")])):
        raw = sealed.header_bytes
        decoded = envelope._decode_usual(raw)
        assert envelope._encode_usual(decoded) == raw
        plain = msgspec.to_builtins(decoded, builtin_types=(bytes,))
        plain["recipients"] = [list(r) for r in plain["recipients"]]
        assert plain == msgpack.unpackb(raw)
