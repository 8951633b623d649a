"""The fast canonical checks accept exactly what the original ones accept, with the same
errors: codec.unpack (hooks and one re-encoding instead of a float walk, a sort and a
re-encoding), read_frame and decode_body (byte-level splits of the fixed-shape frame and
body), and the tag's text and enum checks. Each is compared with the original code, kept
here verbatim as the reference, on valid, mutated and non-canonical inputs."""

from __future__ import annotations

import dataclasses
import struct
import unicodedata
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, ownership
from liaison_net.core.envelope import (
    VERSION,
    UnverifiedFrame,
    decode_body,
    encode_frame,
    read_frame,
)
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.errors import LimitExceeded, Malformed
from tests.core.factories import NOW, Officer, lookup_for, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
CAROL = Officer("lu/cschmit")

# --- the original code, verbatim (commit 594cc06), as the reference ------------------------


def _reference_contains_float(value: Any, depth: int) -> bool:
    if depth > 64:
        raise Malformed("nesting is too deep")
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_reference_contains_float(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_reference_contains_float(v, depth + 1) for v in value)
    return False


def reference_unpack(raw: bytes, *, what: str, max_bytes: int) -> Any:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Malformed(f"{what} must be bytes")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise LimitExceeded(f"{what} is {len(raw)} bytes, limit {max_bytes}")
    if not raw:
        raise Malformed(f"{what} is empty")
    try:
        value = msgpack.unpackb(
            raw, raw=False, use_list=True, strict_map_key=True, ext_hook=codec._refuse_ext,
            max_bin_len=max_bytes, max_str_len=max_bytes, max_array_len=4096,
            max_map_len=4096, max_ext_len=0,
        )
    except Malformed as exc:
        raise Malformed(f"{what}: {exc.detail}") from exc
    except msgpack.ExtraData as exc:
        raise Malformed(f"{what} has trailing bytes") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise Malformed(f"{what} is not valid msgpack ({type(exc).__name__})") from exc
    if _reference_contains_float(value, depth=0):
        raise Malformed(f"{what} contains a float")
    if codec.pack(value) != raw:  # pack: unchanged (sorts, then re-encodes)
        raise Malformed(f"{what} is not canonically encoded")
    return value


def reference_read_frame(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> UnverifiedFrame:
    frame = reference_unpack(raw, what="envelope", max_bytes=limits.max_envelope_bytes)
    if not isinstance(frame, list) or len(frame) != 5:
        raise Malformed("envelope must be an array of 5 items")
    version, header_bytes, body_bytes, key_id, signature = frame
    if version != VERSION or isinstance(version, bool):
        raise Malformed(f"unsupported envelope version {version!r:.20}")
    for name, value in (("header", header_bytes), ("body", body_bytes),
                        ("signer key id", key_id), ("signature", signature)):
        if not isinstance(value, bytes):
            raise Malformed(f"envelope {name} must be bytes")
    if len(header_bytes) > limits.max_header_bytes:
        raise LimitExceeded(f"header is {len(header_bytes)} bytes, "
                            f"limit {limits.max_header_bytes}")
    if len(key_id) != 16:
        raise Malformed("signer key id must be 16 bytes")
    if len(signature) != 64:
        raise Malformed("signature must be 64 bytes")
    return UnverifiedFrame(header_bytes, body_bytes, key_id, signature)


def reference_decode_body(raw: bytes, recipients: int,
                          limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, tuple[bytes, ...],
                                                                    bytes]:
    max_bytes = limits.max_body_bytes + 16 + recipients * (80 + 2) + 64
    d = codec.exact_map("body", reference_unpack(raw, what="body", max_bytes=max_bytes),
                        {"nonce", "wraps", "ciphertext"})
    nonce, wraps, ciphertext = d["nonce"], d["wraps"], d["ciphertext"]
    if not isinstance(nonce, bytes) or len(nonce) != 24:
        raise Malformed("nonce must be 24 bytes")
    if not isinstance(wraps, list) or len(wraps) != recipients:
        raise Malformed("wraps must hold exactly one wrapped key per recipient")
    for w in wraps:
        if not isinstance(w, bytes) or len(w) != 80:
            raise Malformed("each wrapped key must be 80 bytes")
    if not isinstance(ciphertext, bytes) or len(ciphertext) < 16:
        raise Malformed("ciphertext must be bytes holding at least the AEAD tag")
    if len(ciphertext) > limits.max_body_bytes + 16:
        raise LimitExceeded(f"ciphertext exceeds {limits.max_body_bytes} bytes")
    return nonce, tuple(wraps), ciphertext


def reference_check_text(what: str, value: str) -> None:
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" for c in value):
        raise Malformed(f"{what} contains control or format characters")


RAW = seal_from(ALICE, [BOB]).to_bytes()
RAW3 = seal_from(ALICE, [BOB, CAROL, ALICE]).to_bytes()
HEADER = reference_read_frame(RAW).header_bytes
HEADER3 = reference_read_frame(RAW3).header_bytes

# --- comparison --------------------------------------------------------------------------


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """("ok", result) or ("refused", error class, detail): what a caller can observe."""
    try:
        return ("ok", call())
    except (Malformed, LimitExceeded) as exc:
        return ("refused", type(exc), exc.detail)


def mutations(raw: bytes) -> st.SearchStrategy[bytes]:
    """``raw`` with one byte changed, inserted or deleted, or cut short."""
    at = st.integers(0, max(len(raw) - 1, 0))
    byte = st.integers(0, 255).map(lambda b: bytes([b]))
    return st.one_of(
        st.tuples(at, byte).map(lambda ib: raw[:ib[0]] + ib[1] + raw[ib[0] + 1:]),
        st.tuples(at, byte).map(lambda ib: raw[:ib[0]] + ib[1] + raw[ib[0]:]),
        at.map(lambda i: raw[:i] + raw[i + 1:]),
        at.map(lambda i: raw[:i]),
    )


LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
          | st.text(max_size=12) | st.binary(max_size=12) | st.floats(allow_nan=False))
KEYS = st.text(max_size=6) | st.binary(max_size=4)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@st.composite
def encodings(draw: st.DrawFn) -> bytes:
    """Canonical encodings, msgpack's own (unsorted maps, float32s), and mutations of both."""
    value = draw(VALUES)
    try:
        canonical = codec.pack(value)
    except Malformed:  # floats, or str and bytes keys in one map: msgpack's own only
        canonical = msgpack.packb(value, use_bin_type=True)
    try:
        single = msgpack.packb(value, use_bin_type=True, use_single_float=True)
    except OverflowError:  # a float beyond single precision
        single = canonical
    raw = draw(st.sampled_from([canonical, msgpack.packb(value, use_bin_type=True), single]))
    return draw(st.just(raw) | mutations(raw))


@settings(max_examples=1500)
@given(raw=encodings() | st.binary(max_size=64))
def test_unpack_agrees_with_decode_then_reencode(raw: bytes) -> None:
    got = outcome(lambda: codec.unpack(raw, what="v", max_bytes=1 << 16))
    assert got == outcome(lambda: reference_unpack(raw, what="v", max_bytes=1 << 16))


@settings(max_examples=1500)
@given(raw=st.sampled_from([HEADER, HEADER3]).flatmap(mutations))
def test_unpack_agrees_on_mutated_headers(raw: bytes) -> None:
    """Real headers (tag, recipients, maps in maps), one byte changed, added or lost."""
    got = outcome(lambda: codec.unpack(raw, what="header", max_bytes=1 << 16))
    assert got == outcome(lambda: reference_unpack(raw, what="header", max_bytes=1 << 16))


@pytest.mark.parametrize(
    "raw",
    [
        b"\x82\xa1a\x01\xa1a\x02",  # a repeated key
        b"\x82\xa1b\x01\xa1a\x02",  # unsorted keys
        b"\x82\xa1a\x01\xc4\x01b\x02",  # a str and a bytes key in one map
        b"\x82\xc4\x01a\x01\xc4\x01b\x02",  # bytes keys, sorted: canonical
        b"\xcb" + bytes(8),  # a float64 that re-encodes to itself
        b"\xcb" + struct.pack(">d", 1e300),  # ... and does not fit in single precision
        b"\x91\xca" + bytes(4),  # a float32
        *(b"\x91" * n + b"\x00" for n in (63, 64, 65, 66)),  # nesting at the depth limit
        *(b"\x91" * n + b"\x80" for n in (63, 64, 65)),
        codec.pack([[i] for i in range(70)]),  # more containers than the limit, shallow
        msgpack.packb({"k": [{"a": 1.5}] * 70}),  # ... with a float in them
    ],
)
def test_unpack_agrees_on_edge_cases(raw: bytes) -> None:
    got = outcome(lambda: codec.unpack(raw, what="v", max_bytes=1 << 16))
    assert got == outcome(lambda: reference_unpack(raw, what="v", max_bytes=1 << 16))




@settings(max_examples=1500)
@given(raw=mutations(RAW) | mutations(RAW3) | st.sampled_from([RAW, RAW3]))
def test_read_frame_agrees_with_the_generic_decoder(raw: bytes) -> None:
    assert outcome(lambda: read_frame(raw)) == outcome(lambda: reference_read_frame(raw))


@settings(max_examples=1500)
@given(raw=mutations(reference_read_frame(RAW).body_bytes)
       | mutations(reference_read_frame(RAW3).body_bytes), recipients=st.integers(0, 4))
def test_decode_body_agrees_with_the_generic_decoder(raw: bytes, recipients: int) -> None:
    def fast() -> tuple[bytes, tuple[bytes, ...], bytes]:
        body = decode_body(raw, recipients)
        return body.nonce, body.wraps, body.ciphertext

    assert outcome(fast) == outcome(lambda: reference_decode_body(raw, recipients))


@pytest.mark.parametrize("recipients", [1, 15, 16, 64])
def test_frames_and_bodies_of_every_array_size_take_the_fast_path(recipients: int) -> None:
    """Valid input must not fall back (a slow path that silently took over would pass the
    agreement tests): the byte-level split accepts the sealed envelope on its own."""
    from liaison_net.core.envelope import _split_canonical_body, _split_canonical_frame

    officers = [dataclasses.replace(BOB, id=f"be/officer{i}") for i in range(recipients)]
    raw = seal_from(ALICE, officers).to_bytes()
    frame = _split_canonical_frame(raw)
    assert frame is not None
    assert list(frame) == reference_unpack(raw, what="e", max_bytes=1 << 20)
    parts = _split_canonical_body(frame[2], recipients)
    assert parts is not None
    nonce, wraps, ciphertext = reference_decode_body(frame[2], recipients)
    assert parts == (nonce, wraps, ciphertext)


def test_a_verified_envelope_hands_back_the_bytes_it_was_read_from() -> None:
    from liaison_net.core import sealing

    env = sealing.verify(RAW, lookup_for(ALICE), now=NOW)
    assert env.to_bytes() is RAW
    assert env.to_bytes() == encode_frame(env.header_bytes, env.body_bytes,
                                          env.header.sender_key, env.signature)
    # A copy with another field is a different envelope: it is encoded afresh.
    impostor = dataclasses.replace(env, signature=bytes(64))
    assert impostor.to_bytes() != RAW
    assert impostor.to_bytes() == encode_frame(env.header_bytes, env.body_bytes,
                                               env.header.sender_key, bytes(64))


@settings(max_examples=800)
@given(value=st.text(max_size=30) | st.text(st.characters(max_codepoint=0xA0), max_size=30))
def test_text_check_agrees_with_the_per_character_walk(value: str) -> None:
    def fast() -> None:
        ownership._check_text("t", value, 1000, required=False)

    assert outcome(fast) == outcome(lambda: reference_check_text("t", value))


@settings(max_examples=500)
@given(cls=st.sampled_from(list(ownership._MEMBERS)),
       value=st.none() | st.booleans() | st.integers(-2, 6) | st.text(max_size=14)
       | st.sampled_from(["H2", "AMBER+STRICT", "forward", "A", "X"]) | st.lists(st.none()))
def test_enum_lookup_agrees_with_the_enum_call(cls: Any, value: object) -> None:
    def reference() -> object:
        try:
            return cls(value)
        except (ValueError, TypeError) as exc:
            raise Malformed(f"e must be one of "
                            f"{', '.join(str(m.value) for m in cls)}, got {value!r:.40}") from exc

    assert outcome(lambda: ownership._enum("e", cls, value)) == outcome(reference)


def _bin32(data: bytes) -> bytes:
    return b"\xc6" + len(data).to_bytes(4, "big") + data


def _frame_variants() -> list[bytes]:
    """The sealed frame re-encoded in each way the canonical rule forbids, and the fields a
    byte-level split could mistake: longer length prefixes, wider ints, extra items."""
    f = reference_read_frame(RAW)
    h, b, k, s = f.header_bytes, f.body_bytes, f.signer_key_id, f.signature
    bin_ = lambda d: msgpack.packb(d, use_bin_type=True)  # noqa: E731
    return [
        b"\x95\x01" + _bin32(h) + bin_(b) + bin_(k) + bin_(s),
        b"\x95\x01" + bin_(h) + _bin32(b) + bin_(k) + bin_(s),
        b"\x95\x01" + bin_(h) + bin_(b) + b"\xc5\x00\x10" + k + bin_(s),
        b"\x95\xcc\x01" + bin_(h) + bin_(b) + bin_(k) + bin_(s),
        b"\xdc\x00\x05\x01" + bin_(h) + bin_(b) + bin_(k) + bin_(s),
        b"\x95\x01" + bin_(h) + bin_(b) + bin_(k) + bin_(s) + b"\x00",
        b"\x96\x01" + bin_(h) + bin_(b) + bin_(k) + bin_(s) + b"\xc0",
        b"\x95\x01" + bin_(h) + bin_(b) + bin_(k[:15]) + bin_(s + b"x"),
        b"\x95\x01" + bin_(b"") + bin_(b) + bin_(k) + bin_(s),
        b"\x95\x01" + b"\xc5\x00\x05hello" + bin_(b) + bin_(k) + bin_(s),
    ]


@pytest.mark.parametrize("raw", _frame_variants())
def test_read_frame_refuses_second_encodings_as_before(raw: bytes) -> None:
    assert outcome(lambda: read_frame(raw)) == outcome(lambda: reference_read_frame(raw))


def _body_variants() -> list[tuple[bytes, int]]:
    nonce, wraps, ct = reference_decode_body(reference_read_frame(RAW3).body_bytes, 3)
    bin_ = lambda d: msgpack.packb(d, use_bin_type=True)  # noqa: E731
    wraps_ = b"".join(bin_(w) for w in wraps)
    return [
        (b"\x83\xaaciphertext" + _bin32(ct) + b"\xa5nonce" + bin_(nonce) + b"\xa5wraps\x93"
         + wraps_, 3),
        (b"\x83\xaaciphertext" + bin_(ct) + b"\xa5nonce" + bin_(nonce) + b"\xa5wraps\xdc\x00\x03"
         + wraps_, 3),
        (b"\x83\xaaciphertext" + bin_(ct) + b"\xa5nonce" + bin_(nonce) + b"\xa5wraps\x93"
         + wraps_, 2),
        (b"\x83\xaaciphertext" + bin_(ct) + b"\xa5nonce" + bin_(nonce) + b"\xa5wraps\x93"
         + wraps_ + b"\xc0", 3),
        (b"\x83\xa5nonce" + bin_(nonce) + b"\xaaciphertext" + bin_(ct) + b"\xa5wraps\x93"
         + wraps_, 3),
        (b"\x83\xaaciphertext" + bin_(b"") + b"\xa5nonce" + bin_(nonce) + b"\xa5wraps\x93"
         + wraps_, 3),
        (b"\x83\xaaciphertext" + bin_(ct) + b"\xa5nonce" + bin_(nonce) + b"\xa5wraps\x93"
         + b"\xc5\x00\x50" + wraps[0] + bin_(wraps[1]) + bin_(wraps[2]), 3),
    ]


@pytest.mark.parametrize(("raw", "recipients"), _body_variants())
def test_decode_body_refuses_second_encodings_as_before(raw: bytes, recipients: int) -> None:
    def fast() -> tuple[bytes, tuple[bytes, ...], bytes]:
        body = decode_body(raw, recipients)
        return body.nonce, body.wraps, body.ciphertext

    assert outcome(fast) == outcome(lambda: reference_decode_body(raw, recipients))
