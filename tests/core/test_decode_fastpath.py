"""The usual header's one-pass decoding (``envelope._decode_usual_header``, the tag's
``ownership.usual_tag``; docs/performance.md, "Decode + verify, third round") accepts only
what the full checks accept, with the same header, and hands everything else to them: so
``decode_header`` and ``sealing.verify`` decide every input as the reference does (the
previous code, kept verbatim in tests/core/test_header_fastpath.py and
tests/core/test_codec_fastpath.py), on valid, random and tampered input."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, crypto, envelope, sealing
from liaison_net.core.envelope import (
    Kind,
    Precedence,
    Urgency,
    decode_body,
    decode_header,
    read_frame,
    signed_message,
)
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.errors import Forbidden, LiaisonError, Malformed, UnknownKey
from tests.core.factories import NOW, Officer, lookup_for, make_tag, seal_from
from tests.core.test_codec_fastpath import reference_decode_body, reference_read_frame
from tests.core.test_header_fastpath import outcome, reference_decode_header

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
CAROL = Officer("lu/cweber")


def usual(raw: bytes) -> Any:
    return envelope._decode_usual_header(raw, DEFAULT_LIMITS)


SEALED = [
    seal_from(ALICE, [BOB]),
    seal_from(ALICE, [BOB, CAROL], precedence=Precedence.FLASH),
    seal_from(ALICE, [BOB], kind=Kind.REQUEST, urgency=Urgency.URGENT_DIRECT),
    seal_from(ALICE, [BOB], tag=make_tag(handling=Handling.H3, conditions="ask first")),
    seal_from(ALICE, [BOB], tag=make_tag(tlp=Tlp.GREEN, community="benelux-cid")),
    seal_from(ALICE, [BOB], tag=make_tag(permitted_actions=frozenset())),
]
HEADERS = [e.header_bytes for e in SEALED]


@pytest.mark.parametrize("index", range(len(SEALED)))
def test_usual_headers_take_the_fast_path_and_decode_as_before(index: int) -> None:
    """A fast path that silently gave up would pass the agreement tests: it must not."""
    raw = HEADERS[index]
    fast = usual(raw)
    assert fast is not None
    assert fast == reference_decode_header(raw) == SEALED[index].header
    assert dataclasses.asdict(fast) == dataclasses.asdict(reference_decode_header(raw))


def test_a_reply_a_forward_and_an_update_decode_as_before() -> None:
    request = SEALED[2]
    reply = seal_from(BOB, [ALICE], kind=Kind.REPLY, ref=request.id)
    for raw in (reply.header_bytes,):
        assert usual(raw) == reference_decode_header(raw) == decode_header(raw)


def _repacked(fields: dict[str, Any]) -> bytes:
    """``fields`` packed as they are: dict keys in their order, no canonical sorting."""
    return bytes(msgpack.packb(fields, use_bin_type=True))


def _fields(raw: bytes = HEADERS[0]) -> dict[str, Any]:
    return dict(msgpack.unpackb(raw, raw=False))


def _non_canonical_variants() -> list[bytes]:
    f = _fields()
    out = []
    # Each map's keys out of order: the header's, the tag's, the owner's, the evaluation's.
    out.append(_repacked(dict(reversed(list(f.items())))))
    for path in (("tag",), ("tag", "owner"), ("tag", "evaluation")):
        g = _fields()
        node = g
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = dict(reversed(list(node[path[-1]].items())))
        out.append(_repacked(g))
    # The version as a float (double and single precision: both equal 1).
    g = _fields()
    g["version"] = 1.0
    out.append(_repacked(g))
    out.append(_repacked(g).replace(b"\xa7version\xcb" + struct.pack(">d", 1.0),
                                    b"\xa7version\xca" + struct.pack(">f", 1.0)))
    # An accuracy as a float, a retain_until in a wider int, a str where bytes belong.
    g = _fields()
    g["tag"]["evaluation"]["accuracy"] = 2.0
    out.append(_repacked(g))
    canonical = _repacked(_fields())
    # The same width, another type byte: expires as a signed int64 (a length check would
    # not see it).
    out.append(canonical.replace(b"\xa7expires\xcf", b"\xa7expires\xd3"))
    wide = b"\xa7version\x01"
    out.append(canonical.replace(wide, b"\xa7version\xcc\x01"))
    out.append(canonical.replace(wide, b"\xa7version\xd0\x01"))
    g = _fields()
    g["id"] = g["id"].decode("latin-1")
    out.append(_repacked(g))
    # A repeated key (the dict keeps the last: the wire has one more entry than the map).
    assert canonical[0] == 0x8F  # fixmap of 15
    out.append(b"\xde\x00\x10" + canonical[1:] + b"\xa7version\x01")
    out.append(canonical + b"\xc0")  # trailing bytes
    out.append(canonical[:-1])  # truncated
    assert len(set(out)) == len(out) and canonical not in out
    return out


@pytest.mark.parametrize("raw", _non_canonical_variants())
def test_non_canonical_headers_are_refused_as_before(raw: bytes) -> None:
    reference = outcome(lambda: reference_decode_header(raw))
    assert outcome(lambda: decode_header(raw)) == reference
    if reference[0] == "refused":
        assert usual(raw) is None


def _rule_breakers() -> list[bytes]:
    """Canonical headers that break one rule of ``check_header_shape`` each."""
    def changed(**fields: Any) -> bytes:
        g = _fields()
        for name, value in fields.items():
            if name.startswith("tag_"):
                g["tag"][name[4:]] = value
            else:
                g[name] = value
        return codec.pack(g)

    f = _fields()
    twice = [["be/mpeeters", b"\x01" * 16], ["be/mpeeters", b"\x02" * 16]]
    return [
        changed(recipients=twice),
        changed(kind="reply"),
        changed(kind="request"),
        changed(urgency="other"),
        changed(created=f["created"] + 1),
        changed(expires=f["created"] + DEFAULT_LIMITS.max_ttl_ms + 1),
        changed(expires=f["created"]),
        changed(tag_retain_until=f["expires"] - 1),
        changed(tag_retain_until=f["created"] + DEFAULT_LIMITS.max_retention_ms + 1),
        changed(kind="signal"),
        changed(kind="recall"),
        changed(consent=b"c"),
        changed(original=b"o"),
        changed(recipients=[]),
        changed(recipients=[["be/mpeeters", b"\x01" * 15]]),
        changed(tag_share_with=["be", "lu"]),
        changed(tag_share_with=["be", "nl", "nl"]),
        changed(tag_share_with=["nl", "be"]),
        changed(tag_share_with=[["nl"]]),  # unhashable: a set operation must not raise
        changed(tag_share_with=[{"nl": 1}]),
        changed(tag_permitted_actions=[["forward"]]),
        changed(recipients=[[["be/mpeeters"], b"\x01" * 16]]),
        changed(tag_permitted_actions=["forward", "evidence"]),
        changed(tag_conditions="only with H3"),
        changed(tag_community="only with GREEN"),
        changed(tag_purpose=" "),
        changed(tag_purpose="bell\x07"),
    ]


@pytest.mark.parametrize("raw", _rule_breakers())
def test_headers_that_break_a_rule_are_refused_as_before(raw: bytes) -> None:
    reference = outcome(lambda: reference_decode_header(raw))
    assert reference[0] == "refused"
    assert outcome(lambda: decode_header(raw)) == reference
    assert usual(raw) is None


FIELD_VALUES = [None, True, 0, 1, -1, 1.0, 2.0, 1 << 48, "", "x", "message", "request",
                "reply", "signal", "notice", "recall", "flash", "H3", "GREEN", "RED",
                "nl", "be", "nl/x", "be/mpeeters", b"", b"\x01" * 16, [], ["nl"],
                ["be", "nl"], ["nl", "nl"], ["forward"], ["evidence", "forward"], {},
                {"a": 1}, [["be/mpeeters", b"\x01" * 16]],
                [["be/mpeeters", b"\x01" * 16], ["be/mpeeters", b"\x02" * 16]]]
PATHS = ([(k,) for k in sorted(_fields())]
         + [("tag", k) for k in _fields()["tag"]]
         + [("tag", "owner", "node"), ("tag", "owner", "unit"),
            ("tag", "evaluation", "source"), ("tag", "evaluation", "accuracy")])


@settings(max_examples=700, deadline=None)
@given(base=st.sampled_from(HEADERS), path=st.sampled_from(PATHS),
       value=st.sampled_from(FIELD_VALUES) | st.integers(-(1 << 63), (1 << 64) - 1)
       | st.text(max_size=20)
       | st.binary(max_size=20))
def test_random_field_values_are_decided_as_the_reference_decides(
        base: bytes, path: tuple[str, ...], value: Any) -> None:
    fields = _fields(base)
    node = fields
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        raw = codec.pack(fields)
    except LiaisonError:  # a float: the canonical encoder will not write it
        raw = _repacked(fields)
    reference = outcome(lambda: reference_decode_header(raw))
    assert outcome(lambda: decode_header(raw)) == reference
    fast = usual(raw)
    assert fast is None or ("ok", fast) == reference


def _mutations(raw: bytes) -> st.SearchStrategy[bytes]:
    flip = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
        lambda ib: raw[:ib[0]] + bytes([ib[1]]) + raw[ib[0] + 1:])
    cut = st.integers(0, len(raw) - 1).map(lambda i: raw[:i] + raw[i + 1:])
    grow = st.tuples(st.integers(0, len(raw)), st.binary(min_size=1, max_size=3)).map(
        lambda ib: raw[:ib[0]] + ib[1] + raw[ib[0]:])
    return flip | cut | grow


@settings(max_examples=700, deadline=None)
@given(raw=st.sampled_from(HEADERS).flatmap(_mutations))
def test_tampered_headers_are_decided_as_the_reference_decides(raw: bytes) -> None:
    reference = outcome(lambda: reference_decode_header(raw))
    assert outcome(lambda: decode_header(raw)) == reference
    fast = usual(raw)
    assert fast is None or ("ok", fast) == reference


def reference_verify(raw: bytes, lookup: sealing.KeyLookup, now: int) -> Any:
    """``sealing.verify`` with the reference decoders: frame, signature, header, body."""
    frame = reference_read_frame(raw)
    signer = lookup(frame.signer_key_id)
    if signer is None:
        raise UnknownKey(f"signing key {frame.signer_key_id.hex()} is unknown or no longer valid")
    crypto.verify(signer.public_key, signed_message(frame.header_bytes, frame.body_bytes),
                  frame.signature)
    header = reference_decode_header(frame.header_bytes)
    if header.sender_key != frame.signer_key_id:
        raise Malformed("header sender_key differs from the key that signed the frame")
    if header.sender != signer.principal:
        raise Forbidden(f"key {frame.signer_key_id.hex()} does not belong to {header.sender}")
    nonce, wraps, ciphertext = reference_decode_body(frame.body_bytes,
                                                     len(header.recipients))
    envelope.check_fresh(header, now)
    return header, nonce, tuple(wraps), ciphertext


def fast_verify(raw: bytes, lookup: sealing.KeyLookup, now: int) -> Any:
    env = sealing.verify(raw, lookup, now=now)
    return env.header, env.body.nonce, env.body.wraps, env.body.ciphertext


FRAMES = [e.to_bytes() for e in SEALED]


@settings(max_examples=500, deadline=None)
@given(raw=st.sampled_from(FRAMES).flatmap(_mutations) | st.sampled_from(FRAMES))
def test_tampered_envelopes_are_verified_as_the_reference_verifies(raw: bytes) -> None:
    lookup = lookup_for(ALICE, BOB)

    def code(call: Any) -> Any:
        try:
            return ("ok", call())
        except LiaisonError as exc:
            return ("refused", type(exc), exc.detail)

    assert code(lambda: fast_verify(raw, lookup, NOW)) == \
        code(lambda: reference_verify(raw, lookup, NOW))


@pytest.mark.parametrize("raw", FRAMES)
def test_sealed_envelopes_verify_to_what_was_sealed(raw: bytes) -> None:
    env = sealing.verify(raw, lookup_for(ALICE), now=NOW)
    sealed = SEALED[FRAMES.index(raw)]
    assert env == sealed and env.to_bytes() is raw
    assert decode_body(env.body_bytes, len(env.header.recipients)) == sealed.body
    assert read_frame(raw).header_bytes == sealed.header_bytes


def test_verifying_a_usual_envelope_never_reaches_the_generic_decoder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's receive path (``read_frame`` then ``verify_frame``: services/intake.py,
    workers/verify_worker.py) takes the fast path for frame, header and body: a count of
    the generic decoder's calls, 0, where a fast path that gave up would make 3."""
    calls = []
    generic = codec.unpack

    def counted(raw: bytes, *, what: str, max_bytes: int) -> Any:
        calls.append(what)
        return generic(raw, what=what, max_bytes=max_bytes)

    monkeypatch.setattr(codec, "unpack", counted)
    lookup = lookup_for(ALICE)
    for raw in FRAMES:
        frame = read_frame(raw)
        sealing.verify_frame(frame, lookup(frame.signer_key_id), now=NOW)
    assert calls == []
    odd = _non_canonical_variants()[1]  # the tag's keys out of order: the generic decoder
    assert outcome(lambda: decode_header(odd))[0] == "refused"
    assert calls == ["header"]
