"""The header's decoding, made cheaper (docs/performance.md, "Decode + verify, second
round"), accepts exactly what it accepted before and refuses the rest with the same error:
each field checked inline for its usual value, the tag's enums and lists checked in C,
frozen objects built without their per-field ``__setattr__`` (``core/frozen.py``), node
and officer ids that passed once remembered, and map key orders seen sorted remembered.
The original code is kept here verbatim (commit 57e32b4) as the reference."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, ids
from liaison_net.core.envelope import (
    _HEADER_FIELDS,
    _KINDS,
    KEY_ID_BYTES,
    Body,
    Envelope,
    Header,
    Kind,
    Precedence,
    Recipient,
    UnverifiedFrame,
    Urgency,
    _consent,
    _original,
    _recipients,
    _time,
    _urgency,
    check_header_shape,
    decode_header,
    read_frame,
)
from liaison_net.core.frozen import build
from liaison_net.core.ids import check_envelope_id, check_node_id, check_officer_id
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.core.ownership import (
    _TAG_FIELDS,
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    PermittedAction,
    SourceReliability,
    Tlp,
    _enum,
    _int,
    _str,
)
from liaison_net.core.signals import SignalAnnex
from liaison_net.errors import BadTimestamp, LimitExceeded, Malformed
from tests.core.factories import Officer, make_tag, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")

# --- the original code, verbatim (commit 57e32b4), as the reference ------------------------


def reference_sorted_unique_strs(what: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Malformed(f"{what} must be a list of strings")
    if value != sorted(set(value)):
        raise Malformed(f"{what} must be sorted and without duplicates")
    return value


def reference_tag(value: object, limits: Limits = DEFAULT_LIMITS) -> OwnershipTag:
    d = codec.exact_map("tag", value, _TAG_FIELDS)
    owner = codec.exact_map("tag owner", d["owner"], {"node", "unit"})
    evaluation = codec.exact_map("tag evaluation", d["evaluation"], {"source", "accuracy"})
    share = reference_sorted_unique_strs("tag share_with", d["share_with"])
    actions = reference_sorted_unique_strs("tag permitted_actions", d["permitted_actions"])
    accuracy = evaluation["accuracy"]
    if not isinstance(accuracy, int) or isinstance(accuracy, bool):
        raise Malformed("tag evaluation accuracy must be an integer 1-4")
    tag = OwnershipTag(
        owner=Owner(node=_str("tag owner node", owner["node"]),
                    unit=_str("tag owner unit", owner["unit"])),
        handling=_enum("tag handling", Handling, d["handling"]),
        tlp=_enum("tag tlp", Tlp, d["tlp"]),
        evaluation=Evaluation(
            source=_enum("tag evaluation source", SourceReliability, evaluation["source"]),
            accuracy=_enum("tag evaluation accuracy", InformationAccuracy, accuracy),
        ),
        share_with=frozenset(share),
        permitted_actions=frozenset(
            _enum("tag permitted action", PermittedAction, a) for a in actions
        ),
        purpose=_str("tag purpose", d["purpose"]),
        retain_until=_int("tag retain_until", d["retain_until"]),
        conditions=_str("tag conditions", d["conditions"]),
        community=_str("tag community", d["community"]),
    )
    return tag.validate(limits)


def reference_decode_header(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
    value = codec.unpack(raw, what="header", max_bytes=limits.max_header_bytes)
    d = codec.exact_map("header", value, _HEADER_FIELDS)
    if d["version"] != 1 or isinstance(d["version"], bool):
        raise Malformed(f"unsupported header version {d['version']!r:.20}")
    try:
        kind = _KINDS.get(d["kind"]) if type(d["kind"]) is str else None
        kind = Kind(d["kind"]) if kind is None else kind  # the miss names the fault
    except (ValueError, TypeError) as exc:
        allowed = ", ".join(k.value for k in Kind)
        raise Malformed(f"kind must be one of {allowed}, got {d['kind']!r:.40}") from exc
    recipients = _recipients(d["recipients"], limits)
    ref = d["ref"]
    if ref is not None:
        check_envelope_id(ref)
    sender_key = d["sender_key"]
    if not isinstance(sender_key, bytes) or len(sender_key) != KEY_ID_BYTES:
        raise Malformed("sender_key must be a 16-byte key id")
    header = Header(
        id=check_envelope_id(d["id"]),
        kind=kind,
        precedence=Precedence.from_label(d["precedence"]),
        sender=check_officer_id(d["sender"], what="sender"),
        sender_key=sender_key,
        recipients=recipients,
        created=_time("created", d["created"]),
        expires=_time("expires", d["expires"]),
        tag=reference_tag(d["tag"], limits),
        ref=ref,
        signal=SignalAnnex.from_wire(d["signal"]) if d["signal"] is not None else None,
        urgency=_urgency(d["urgency"]),
        consent=_consent(d["consent"]),
        original=_original(d["original"], limits),
    )
    check_header_shape(header, limits)
    return header


# --- comparison --------------------------------------------------------------------------


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """("ok", result) or ("refused", error class, detail): what a caller can observe."""
    try:
        return ("ok", call())
    except (Malformed, LimitExceeded, BadTimestamp) as exc:
        return ("refused", type(exc), exc.detail)


HEADER = read_frame(seal_from(ALICE, [BOB]).to_bytes()).header_bytes
REQUEST = read_frame(seal_from(ALICE, [BOB], kind=Kind.REQUEST, urgency=Urgency.OTHER,
                              precedence=Precedence.ROUTINE).to_bytes()).header_bytes
FIELDS = msgpack.unpackb(HEADER, raw=False)


class Text(str):
    """A str subclass: the inline checks test the exact type and leave it to the helper."""


# Odd values for any field: wrong types, bounds, near-miss enum labels.
ODD = [None, True, False, 0, 1, -1, 1 << 48, (1 << 48) - 1, 2**64 - 1, "", "routine",
       "ROUTINE", "flash", "flash ", "pr\u0131ority", "message", "H0", "H4", "AMBER",
       "amber", "B", "Z", b"", b"\x01" * 16, b"\x01" * 15, [], ["be"], ["be", "be"],
       ["nl", "be"], [1], {}, "nl", "nl/jdevries", "nl/JDevries", "Nl", 3, 4, 5]
TAG_PATHS = [("tag", k) for k in sorted(_TAG_FIELDS)] + [
    ("tag", "owner", "node"), ("tag", "owner", "unit"), ("tag", "evaluation", "source"),
    ("tag", "evaluation", "accuracy")]
PATHS = [(k,) for k in sorted(_HEADER_FIELDS)] + TAG_PATHS


def with_value(fields: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    """The header's fields with the one at ``path`` replaced, canonically packed."""
    copy = msgpack.unpackb(msgpack.packb(fields, use_bin_type=True), raw=False)
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return codec.pack(copy)


@pytest.mark.parametrize("path", PATHS, ids=".".join)
def test_every_odd_field_value_is_decided_as_before(path: tuple[str, ...]) -> None:
    for value in ODD:
        raw = with_value(FIELDS, path, value)
        assert outcome(lambda r=raw: decode_header(r)) == \
            outcome(lambda r=raw: reference_decode_header(r)), (path, value)


def test_a_str_subclass_goes_through_the_helpers() -> None:
    for path in [("sender",), ("precedence",), ("tag", "owner", "node"), ("tag", "tlp"),
                 ("tag", "handling"), ("tag", "evaluation", "source")]:
        fields = msgpack.unpackb(HEADER, raw=False)
        node = fields
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = Text(node[path[-1]])
        raw = codec.pack(fields)
        assert outcome(lambda r=raw: decode_header(r)) == \
            outcome(lambda r=raw: reference_decode_header(r))


@settings(max_examples=600)
@given(raw=st.sampled_from([HEADER, REQUEST]).flatmap(
    lambda h: st.tuples(st.integers(0, len(h) - 1), st.integers(0, 255)).map(
        lambda ib: h[:ib[0]] + bytes([ib[1]]) + h[ib[0] + 1:])))
def test_mutated_headers_are_decided_as_before(raw: bytes) -> None:
    assert outcome(lambda: decode_header(raw)) == outcome(lambda: reference_decode_header(raw))


def test_valid_headers_decode_to_the_same_objects() -> None:
    for raw in (HEADER, REQUEST):
        new, old = decode_header(raw), reference_decode_header(raw)
        assert new == old
        assert hash(new) == hash(old) and hash(new.tag) == hash(old.tag)
        assert dataclasses.asdict(new) == dataclasses.asdict(old)


# --- the pieces ----------------------------------------------------------------------------


def test_build_gives_what_init_gives_and_stays_frozen() -> None:
    envelope = seal_from(ALICE, [BOB])
    tag = make_tag()
    cases: list[tuple[type[Any], object]] = [
        (Header, envelope.header), (Body, envelope.body), (OwnershipTag, tag),
        (Owner, tag.owner), (Evaluation, tag.evaluation),
        (Recipient, envelope.header.recipients[0]),
        (UnverifiedFrame, read_frame(envelope.to_bytes())),
    ]
    for cls, made in cases:
        fields = {f.name: getattr(made, f.name) for f in dataclasses.fields(cls)}
        built = build(cls, **fields)
        assert type(built) is cls and built == cls(**fields) and hash(built) == hash(made)
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.__setattr__(next(iter(fields)), None)
    fields = {f.name: getattr(envelope, f.name) for f in dataclasses.fields(Envelope)}
    built = build(Envelope, **fields)
    assert built == envelope and built.to_bytes() == envelope.to_bytes()


def test_remembered_ids_keep_node_and_officer_forms_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Empty memos: tests run before this one in the same process may have filled them.
    monkeypatch.setattr(ids, "_VALID_NODE_IDS", set())
    monkeypatch.setattr(ids, "_VALID_OFFICER_IDS", set())
    assert check_officer_id("nl/jdevries") == "nl/jdevries"
    assert check_node_id("lu") == "lu"
    assert "nl/jdevries" in ids._VALID_OFFICER_IDS and "lu" in ids._VALID_NODE_IDS
    with pytest.raises(Malformed, match="must match"):
        check_node_id("nl/jdevries")
    with pytest.raises(Malformed, match="<node>/<handle>"):
        check_officer_id("lu")
    with pytest.raises(Malformed):
        check_officer_id(Text("NL/x"))  # a subclass is never taken from the memo


def test_remembered_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_VALID_NODE_IDS", set())
    monkeypatch.setattr(ids, "_MAX_VALID_IDS", 2)
    for node in ("aa", "bb", "cc", "dd"):
        check_node_id(node)
    assert len(ids._VALID_NODE_IDS) == 2


def test_a_remembered_key_order_does_not_let_another_order_through(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty memo: tests run before this one in the same process may have filled it.
    monkeypatch.setattr(codec, "_SORTED_KEYS", set())
    sorted_map = codec.pack({"a": 1, "b": 2})
    assert codec.unpack(sorted_map, what="m", max_bytes=64) == {"a": 1, "b": 2}
    assert ("a", "b") in codec._SORTED_KEYS
    unsorted = msgpack.packb({"b": 2, "a": 1})
    with pytest.raises(Malformed, match="not canonically encoded"):
        codec.unpack(unsorted, what="m", max_bytes=64)


def test_remembered_key_orders_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_SORTED_KEYS", set())
    monkeypatch.setattr(codec, "_MAX_SORTED_KEYS", 3)
    for i in range(6):
        codec.unpack(codec.pack({f"k{i}": 1, f"l{i}": 2}), what="m", max_bytes=64)
    codec.unpack(codec.pack({"x" * 600: 1}), what="m", max_bytes=1024)
    assert len(codec._SORTED_KEYS) == 3
    monkeypatch.setattr(codec, "_SORTED_KEYS", set())
    codec.unpack(codec.pack({"x" * 600: 1}), what="m", max_bytes=1024)  # too long a key
    codec.unpack(codec.pack({f"{i:02}": i for i in range(17)}), what="m", max_bytes=1024)
    assert not codec._SORTED_KEYS


def test_many_containers_take_the_checks_that_name_the_depth() -> None:
    deep: Any = 0
    for _ in range(70):
        deep = [deep]
    with pytest.raises(Malformed, match="nesting is too deep"):
        codec.unpack(msgpack.packb(deep), what="m", max_bytes=1024)
