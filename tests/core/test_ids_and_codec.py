"""Envelope ids sort by time and read back; canonical msgpack refuses second encodings."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec
from liaison_net.core.ids import (
    check_officer_id,
    envelope_id_time_ms,
    id_from_text,
    id_to_text,
    new_envelope_id,
    node_of,
)
from liaison_net.errors import LimitExceeded, Malformed, Refused

TIMES = st.integers(0, (1 << 48) - 1)
ENTROPY = st.binary(min_size=10, max_size=10)


@given(t=TIMES, e=ENTROPY)
def test_id_text_round_trip(t: int, e: bytes) -> None:
    eid = new_envelope_id(t, e)
    text = id_to_text(eid)
    assert len(text) == 26
    assert id_from_text(text) == eid
    assert id_from_text(text.lower()) == eid
    assert envelope_id_time_ms(eid) == t


def _text_digit_by_digit(eid: bytes) -> str:
    """The definition: 26 base32 digits of the 128-bit number, most significant first."""
    n = int.from_bytes(eid, "big")
    return "".join("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(n >> (5 * i)) & 31]
                   for i in reversed(range(26)))


@given(eid=st.binary(min_size=16, max_size=16))
def test_id_text_is_the_base32_digits_of_the_id(eid: bytes) -> None:
    # id_to_text writes two digits per table lookup: the same text as one digit at a time.
    assert id_to_text(eid) == _text_digit_by_digit(eid)


def test_id_text_of_the_extreme_ids() -> None:
    assert id_to_text(bytes(16)) == "0" * 26
    assert id_to_text(b"\xff" * 16) == "7" + "Z" * 25
    assert id_to_text(bytes(15) + b"\x21") == "0" * 24 + "11"


@given(a=TIMES, b=TIMES, ea=ENTROPY, eb=ENTROPY)
def test_ids_sort_by_time_as_bytes_and_text(a: int, b: int, ea: bytes, eb: bytes) -> None:
    ia, ib = new_envelope_id(a, ea), new_envelope_id(b, eb)
    if a < b:
        assert ia < ib and id_to_text(ia) < id_to_text(ib)


@pytest.mark.parametrize("bad", ["", "0" * 25, "U" * 26, "8" + "0" * 25, 123])
def test_bad_id_text_is_refused(bad: object) -> None:
    with pytest.raises(Malformed):
        id_from_text(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["nl/jdevries", "de-nw/k.mueller", "lu/desk"])
def test_officer_ids(good: str) -> None:
    assert check_officer_id(good) == good
    assert node_of(good) == good.split("/")[0]


@pytest.mark.parametrize("bad", ["nl", "nl/", "/x", "NL/x", "nl/x/y", "nl/Jan", "n l/x",
                                 "nl/jdevries\n", "nl\n/x",
                                 "nl/" + "a" * 40, None, 7])
def test_bad_officer_ids(bad: object) -> None:
    with pytest.raises(Malformed):
        check_officer_id(bad)


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@settings(max_examples=200)
@given(value=VALUES)
def test_canonical_round_trip(value: object) -> None:
    raw = codec.pack(value)
    assert codec.pack(codec.unpack(raw, what="v", max_bytes=1 << 20)) == raw


@settings(max_examples=300)
@given(raw=st.binary(max_size=512))
def test_unpack_arbitrary_bytes_raises_only_typed_errors(raw: bytes) -> None:
    try:
        value = codec.unpack(raw, what="v", max_bytes=1 << 20)
    except Refused:
        return
    assert codec.pack(value) == raw  # whatever is accepted is canonical


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (msgpack.packb({"b": 1, "a": 2}), "canonical"),  # unsorted keys
        (b"\xcd\x00\x01", "canonical"),  # 1 as a uint16
        (b"\xd9\x01x", "canonical"),  # a 1-char str in the str8 form
        (msgpack.packb(1.5), "float"),
        (msgpack.packb(msgpack.ExtType(1, b"x")), "not valid|extension"),
        (msgpack.packb(1) + b"\x00", "trailing"),
        (b"\x92\x01", "not valid"),  # truncated array
        (b"\x91" * 3000 + b"\x00", "not valid|deep"),
        (b"", "empty"),
    ],
)
def test_non_canonical_or_malformed_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        codec.unpack(raw, what="v", max_bytes=1 << 20)


def test_unpack_size_limit() -> None:
    with pytest.raises(LimitExceeded):
        codec.unpack(codec.pack(b"x" * 100), what="v", max_bytes=50)
