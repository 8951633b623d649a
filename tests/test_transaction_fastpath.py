"""``decode_transaction``'s fast path accepts nothing the full checks refuse, and decodes
what it accepts to the same transaction; refusals keep their type, code and reason.

The reference is the decoding as it read before (``codec.unpack`` then the shape checks),
kept here. Bodies are made by hand with msgpack: the usual shape and its neighbours (keys
missing, extra, repeated or out of order; leaves of other types, floats of both widths,
non-shortest ints and lengths, str for bytes, trailing bytes, long lists).
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from liaison_net.core import codec
from liaison_net.errors import LiaisonError
from liaison_net.federation import protocol
from liaison_net.federation.protocol import (
    TRANSACTION_FIELDS,
    Transaction,
    _approvals,
    _covers,
    _usual_transaction,
    decode_transaction,
)

MAX = 64 * 1024


def reference_decode(body: bytes, *, max_bytes: int) -> Transaction:
    """``decode_transaction`` before its fast path: every body through ``codec.unpack``."""
    value = codec.unpack(body, what="request", max_bytes=max_bytes)
    optional = {k for k in ("covers", "approvals") if isinstance(value, dict) and k in value}
    fields = codec.exact_map("request", value, TRANSACTION_FIELDS | optional)
    origin, txn, envelopes = fields["origin"], fields["txn"], fields["envelopes"]
    if not isinstance(origin, str):
        raise protocol.Malformed("origin must be a node id")
    if not isinstance(txn, bytes) or len(txn) != 16:
        raise protocol.Malformed("txn must be a 16-byte id")
    if not isinstance(envelopes, list) or not all(isinstance(e, bytes) for e in envelopes):
        raise protocol.Malformed("envelopes must be a list of byte strings")
    if len(envelopes) > protocol.MAX_TRANSACTION_ENVELOPES:
        raise protocol.LimitExceeded(f"at most {protocol.MAX_TRANSACTION_ENVELOPES} "
                                     "envelopes per transaction")
    return Transaction(origin, txn, envelopes,
                       _covers(fields["covers"], len(envelopes)) if "covers" in optional
                       else {},
                       _approvals(fields["approvals"], len(envelopes))
                       if "approvals" in optional else {})


def _outcome(run: Any) -> object:
    try:
        return run()
    except LiaisonError as exc:
        return type(exc), exc.code, exc.detail


ids = st.binary(min_size=16, max_size=16)
leaves = st.one_of(st.binary(max_size=40), ids, st.text(max_size=8), st.integers(-2**40, 2**64 - 1),
                   st.floats(allow_nan=False), st.none(), st.booleans())
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@st.composite
def usual(draw: st.DrawFn) -> dict[str, Any]:
    """A transaction as a node sends it, sometimes with covers and approvals."""
    envelopes = draw(st.lists(st.binary(min_size=0, max_size=300), max_size=12))
    body: dict[str, Any] = {"origin": draw(st.sampled_from(["nl", "be", "lu", "de-nw", ""])),
                            "txn": draw(ids), "envelopes": envelopes}
    if draw(st.booleans()):
        body["covers"] = draw(st.lists(st.tuples(ids, st.lists(ids, min_size=1, max_size=3))
                                       .map(list), max_size=len(envelopes)))
    if draw(st.booleans()):
        body["approvals"] = draw(st.lists(st.tuples(ids, st.binary(max_size=30)).map(list),
                                          max_size=len(envelopes)))
    return body


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    body = draw(usual())
    how = draw(st.sampled_from(["as is", "as is", "replace", "drop", "add", "unsorted",
                                "single floats", "str for bytes", "trailing", "fat int",
                                "long list", "repeat key", "not a map"]))
    event(how)
    keys = sorted(body)
    if how == "replace":
        body[draw(st.sampled_from(keys))] = draw(values)
    elif how == "drop":
        del body[draw(st.sampled_from(keys))]
    elif how == "add":
        body[draw(st.sampled_from(["extra", "covers", "approvals", "Origin"]))] = draw(values)
    elif how == "long list":
        body["envelopes"] = [b""] * draw(st.sampled_from([1025, 4096, 4097]))
    elif how == "not a map":
        return bytes(msgpack.packb(draw(values), use_bin_type=True))
    if how == "repeat key":
        key = draw(st.sampled_from(keys))
        pairs = [(k, body[k]) for k in sorted(body)] + [(key, body[key])]
        return _map_of(pairs)
    order = sorted(body, reverse=how == "unsorted" and len(body) > 1)
    raw = bytes(msgpack.packb({k: body[k] for k in order}, use_bin_type=how != "str for bytes",
                              use_single_float=how == "single floats"))
    if how == "trailing":
        raw += b"\xc0"
    if how == "fat int" and b"\xc4\x10" in raw:  # a 16-byte bin's length as bin 16
        raw = raw.replace(b"\xc4\x10", b"\xc5\x00\x10", 1)
    return raw


def _map_of(pairs: list[tuple[str, Any]]) -> bytes:
    out = bytes([0x80 | len(pairs)])
    for key, value in pairs:
        out += msgpack.packb(key) + msgpack.packb(value, use_bin_type=True)
    return out


@settings(max_examples=600, deadline=None)
@given(body=bodies())
@example(body=codec.pack({"envelopes": [], "origin": "nl", "txn": b"t" * 16}))
def test_the_fast_path_decides_as_the_full_checks(body: bytes) -> None:
    expected = _outcome(lambda: reference_decode(body, max_bytes=MAX))
    assert _outcome(lambda: decode_transaction(body, max_bytes=MAX)) == expected
    fast = _usual_transaction(body, MAX)
    event("fast path" if fast is not None else "full checks")
    if fast is not None:  # accepted: exactly what codec.unpack reads, never more
        assert fast == codec.unpack(body, what="request", max_bytes=MAX)


@given(body=usual())
def test_a_usual_body_takes_the_fast_path(body: dict[str, Any]) -> None:
    raw = codec.pack(body)
    assert _usual_transaction(raw, MAX) == codec.unpack(raw, what="request", max_bytes=MAX)


def test_the_size_limit_is_the_full_checks_one() -> None:
    raw = codec.pack({"envelopes": [b"x" * 100], "origin": "nl", "txn": b"t" * 16})
    assert _usual_transaction(raw, len(raw) - 1) is None
    assert _outcome(lambda: decode_transaction(raw, max_bytes=len(raw) - 1)) == _outcome(
        lambda: reference_decode(raw, max_bytes=len(raw) - 1))


def _with(**optional: Any) -> bytes:
    return codec.pack({"envelopes": [b"e"], "origin": "nl", "txn": b"t" * 16, **optional})


ID = b"i" * 16
#: One list past ``codec.MAX_CONTAINER_ITEMS`` at each depth of covers and approvals
#: (review16i: dropping a nested bound of ``_UsualTransaction`` changed only the refusal's
#: reason, which no test saw).
OVER = codec.MAX_CONTAINER_ITEMS + 1


@pytest.mark.parametrize("body", [
    _with(covers=[[ID, [b""] * OVER]]),  # a carrier's ids
    _with(covers=[[ID] + [b""] * (OVER - 1)]),  # a covers entry
    _with(approvals=[[ID] + [b""] * (OVER - 1)]),  # an approvals entry
    _with(envelopes=[b""] * OVER),
], ids=["covers ids", "covers entry", "approvals entry", "envelopes"])
def test_a_nested_list_over_the_container_bound_is_refused_as_before(body: bytes) -> None:
    assert _usual_transaction(body, MAX) is None
    expected = _outcome(lambda: reference_decode(body, max_bytes=MAX))
    assert expected[0] is protocol.Malformed
    assert _outcome(lambda: decode_transaction(body, max_bytes=MAX)) == expected
