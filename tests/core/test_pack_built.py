"""The per-envelope packings of a destination without ``codec.pack``'s walk
(``codec.pack_built``: "relayed" statements, their effects' arguments) and the audit detail's
one encoder: each gives exactly the bytes (or text) of the general way, and what the general
way refuses is still refused (docs/performance.md, lane dest16)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec
from liaison_net.core.audit import detail
from liaison_net.core.effects import (
    EVIDENCE,
    Effect,
    destination_evidence,
    evidence,
    unpack_args,
)
from liaison_net.core.evidence import Statement, Step, make
from liaison_net.core.evidence_batch import leaf_bytes
from liaison_net.errors import Malformed
from tests.core.factories import NOW, Officer, seal_from

_SCALARS = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1), st.text(max_size=300),
    st.binary(max_size=300), st.booleans(), st.none())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.one_of(_SCALARS, st.lists(_SCALARS,
                                                                         max_size=40)),
                       max_size=12))
def test_pack_built_of_a_sorted_map_is_pack(value: dict[str, Any]) -> None:
    built = dict(sorted(value.items()))
    assert codec.pack_built(built) == codec.pack(value)
    assert codec.pack_built(built) == msgpack.packb(built, use_bin_type=True)


@pytest.mark.parametrize("n", [0, 1, 31, 32, 255, 256, 65535, 65536])
def test_pack_built_lengths_at_each_format_boundary(n: int) -> None:
    value = {"b": b"x" * n, "l": ["y"] * n, "s": "z" * n}
    assert codec.pack_built(value) == codec.pack(value)


def _statements() -> list[Statement]:
    alice, bob, carol = Officer("nl/alice"), Officer("be/bob"), Officer("be/carol")
    header = seal_from(alice, [bob, carol], b"x").header
    return [make(Step.RELAYED, header, recipient="be/bob", at=NOW),
            make(Step.RELAYED, header, recipient="be/carol", at=(1 << 48) - 1),
            make(Step.ACCEPTED, header, at=1),
            make(Step.DELIVERED, header, recipient="be/bob", at=NOW + 70_000)]


@pytest.mark.parametrize("statement", _statements())
def test_leaf_bytes_are_the_canonical_packing_of_the_statement(statement: Statement) -> None:
    assert leaf_bytes(statement) == codec.pack(statement.to_wire())


def test_a_statement_of_other_types_is_packed_or_refused_as_before() -> None:
    statement = _statements()[0]
    # A float time: refused by ``codec.pack`` (no float in canonical bytes), not packed.
    floating = Statement(statement.step, statement.envelope, statement.recipients,
                         statement.by, 1.5)  # type: ignore[arg-type]
    with pytest.raises(Malformed, match="float"):
        leaf_bytes(floating)
    # A bool time is an int subclass: the general way packs it as a bool, and so does this.
    boolean = Statement(statement.step, statement.envelope, statement.recipients,
                        statement.by, True)
    assert leaf_bytes(boolean) == codec.pack(boolean.to_wire())


def test_evidence_effects_pack_their_arguments_as_pack_does() -> None:
    alice, bob = Officer("nl/alice"), Officer("be/bob")
    header = seal_from(alice, [bob], b"x").header
    [effect] = destination_evidence(header, local=["be/bob"], at=NOW)
    assert effect.pack_args() == codec.pack(effect.args)
    assert effect == evidence(make(Step.RELAYED, header, recipient="be/bob", at=NOW),
                              sender="nl/alice")


@pytest.mark.parametrize("args", [
    {"sender": "nl/alice", "statement": b"s", "extra": 1},  # another shape
    {"sender": 1.5, "statement": b"s"},  # a float: refused
    {"statement": "s", "sender": "nl/alice"},  # text, not bytes
])
def test_other_evidence_arguments_take_the_general_way(args: dict[str, Any]) -> None:
    effect = Effect(EVIDENCE, b"r" * 16, args)
    try:
        expected = codec.pack(args)
    except Malformed:
        with pytest.raises(Malformed):
            effect.pack_args()
    else:
        assert effect.pack_args() == expected


@pytest.mark.parametrize("fields", [
    {"layer": "destination", "peer": "nl", "recipients": 2, "inboxes": ["be/bob"],
     "purpose": "Operation \u00e9t\u00e9 \"x\" \\ \n", "tlp": "amber", "consent": True},
    {"b": None, "a": [1, "\u2028", {"z": 1, "y": 2}]},
])
def test_detail_is_the_sorted_compact_json_of_dumps(fields: dict[str, Any]) -> None:
    assert detail(**fields) == json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _general_unpack_args(kind: str, raw: bytes) -> dict[str, Any] | str:
    """What ``unpack_args`` answered before its evidence shortcut: ``codec.unpack``'s."""
    try:
        value = codec.unpack(raw, what="effect", max_bytes=256 * 1024)
    except Malformed as exc:
        return exc.code
    return value if isinstance(value, dict) else "malformed"


def _answer(kind: str, raw: bytes) -> dict[str, Any] | str:
    try:
        return unpack_args(kind, raw)
    except Malformed as exc:
        return exc.code


@pytest.mark.parametrize("raw", [
    codec.pack({"sender": "nl/alice", "statement": b"s" * 90}),  # the usual shape
    codec.pack({"sender": "nl/alice", "statement": b""}),
    codec.pack({"sender": "nl/alice", "statement": b"s", "x": 1}),  # another shape
    codec.pack({"sender": "nl/alice"}),
    codec.pack({"sender": "nl/alice", "statement": "text"}),
    # Not canonical: keys unsorted; a short str as str8; a repeated key; trailing bytes.
    msgpack.packb({"statement": b"s", "sender": "nl/alice"}, use_bin_type=True),
    b"\x82\xa6sender\xd9\x08nl/alice\xa9statement\xc4\x01s",
    b"\x82\xa6sender\xa8nl/alice\xa6sender\xa8nl/alice",
    codec.pack({"sender": "nl/alice", "statement": b"s"}) + b"\x00",
    msgpack.packb({"sender": 1.5, "statement": b"s"}, use_bin_type=True),
])
def test_evidence_arguments_read_back_exactly_as_codec_unpack_reads_them(raw: bytes) -> None:
    assert _answer(EVIDENCE, raw) == _general_unpack_args(EVIDENCE, raw)


class _Text(str):
    """A str subclass: ``pack`` packs it as str; the built way does not know it."""


@pytest.mark.parametrize("value", [
    {"a": 1 << 64}, {"a": -(1 << 63) - 1},  # past msgpack's integers: pack refuses them too
    {"a": "\ud800"},  # a lone surrogate (HTTP header text can hold one): not UTF-8
    {"a": _Text("x")}, {"a": [b"x", object()]},
])
def test_what_cannot_be_built_is_malformed_not_an_untyped_error(value: dict[str, Any]) -> None:
    with pytest.raises(Malformed, match="cannot be encoded"):
        codec.pack_built(value)


def test_a_statement_past_64_bit_time_is_refused_as_pack_refuses_it() -> None:
    """``leaf_bytes`` takes the built way for an exact int of any size: a time past 2**64
    is ``Malformed`` there as in ``codec.pack`` (it was an OverflowError)."""
    statement = _statements()[0]
    huge = Statement(statement.step, statement.envelope, statement.recipients,
                     statement.by, 1 << 64)
    with pytest.raises(Malformed):
        codec.pack(huge.to_wire())
    with pytest.raises(Malformed):
        leaf_bytes(huge)
