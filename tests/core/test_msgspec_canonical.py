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
from liaison_net.core.limits import DEFAULT_LIMITS
from tests.core.factories import Officer, seal_from
from tests.core.test_header_fastpath import outcome, reference_decode_header

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


def _replaced(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1
    return raw.replace(old, new)


def _msgspec_shape_cases() -> list[bytes]:
    """What msgspec's typed decoder treats in its own way: unknown and missing fields (its
    ``forbid_unknown_fields``, its required fields), an array where a struct is and the
    reverse, a recipient of three items, a bool where an int is, a repeated key in a nested
    map (it keeps the last, as msgpack does), the tag's maps with a key too many."""
    raw = seal_from(Officer("nl/jdevries"), [Officer("be/mpeeters")]).header_bytes

    def packed(change: Any) -> bytes:
        fields = msgpack.unpackb(raw)
        change(fields)
        return codec.pack(fields)

    owner_map = codec.pack({"node": "nl", "unit": "cid-limburg"})
    repeated_owner = b"\x83" + owner_map[1:] + b"\xa4unit\xa1x"  # three entries, two keys
    return [
        packed(lambda f: f.update(zzz=1)),
        packed(lambda f: f.update(aaa=None)),
        packed(lambda f: f.pop("ref")),
        packed(lambda f: f.pop("signal")),
        packed(lambda f: f["tag"].update(extra="x")),
        packed(lambda f: f["tag"]["owner"].update(extra="x")),
        packed(lambda f: f["tag"]["evaluation"].update(extra=1)),
        packed(lambda f: f["tag"]["evaluation"].pop("accuracy")),
        packed(lambda f: f.update(tag=list(f["tag"].values()))),
        packed(lambda f: f.update(recipients=[[*f["recipients"][0], b"x"]])),
        packed(lambda f: f.update(recipients=[{"officer": "be/mpeeters",
                                              "key_id": f["recipients"][0][1]}])),
        packed(lambda f: f.update(version=True)),
        packed(lambda f: f.update(created=True)),
        packed(lambda f: f.update(kind=b"message")),
        packed(lambda f: f.update(urgency="")),
        packed(lambda f: f["tag"].update(handling="h0")),
        packed(lambda f: f["tag"]["evaluation"].update(accuracy=True)),
        packed(lambda f: f["tag"]["evaluation"].update(accuracy=5)),
        packed(lambda f: f["tag"].update(retain_until=1 << 53)),
        packed(lambda f: f.update(signal={"severity": 1})),
        _replaced(raw, owner_map, repeated_owner),
    ]


@pytest.mark.parametrize("raw", _msgspec_shape_cases())
def test_msgspec_shapes_are_decided_as_the_reference_decides(raw: bytes) -> None:
    reference = outcome(lambda: reference_decode_header(raw))
    assert outcome(lambda: envelope.decode_header(raw)) == reference
    if reference[0] == "refused":
        assert envelope._decode_usual_header(raw, DEFAULT_LIMITS) is None
