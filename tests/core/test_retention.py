"""The signed tag skeleton a purged envelope leaves behind (core.retention)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec
from liaison_net.core.envelope import read_frame
from liaison_net.core.ownership import Handling
from liaison_net.core.retention import (
    Skeleton,
    decode_skeleton,
    make_skeleton,
    skeleton_of,
)
from liaison_net.errors import LimitExceeded, Malformed
from tests.core.factories import Officer, make_tag, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")


def test_skeleton_keeps_header_and_signature_and_drops_the_body() -> None:
    env = seal_from(ALICE, [BOB], plaintext=b"the secret alert text " * 20,
                    tag=make_tag(handling=Handling.H2))
    raw = make_skeleton(env.to_bytes())
    skeleton = decode_skeleton(raw)
    assert skeleton.header_bytes == env.header_bytes
    assert skeleton.signature == env.signature
    assert skeleton.signer_key_id == env.header.sender_key
    assert skeleton.body_sha256 == hashlib.sha256(env.body_bytes).digest()
    assert skeleton.body_length == len(env.body_bytes)
    # The body (ciphertext, wraps, nonce) is gone; the tag is still readable.
    assert env.body.ciphertext not in raw and env.body.nonce not in raw
    assert all(w not in raw for w in env.body.wraps)
    assert skeleton.header() == env.header
    assert skeleton.header().tag.handling.value == "H2"
    assert len(raw) < len(env.to_bytes())


def test_skeleton_and_frame_cannot_be_mistaken_for_each_other() -> None:
    env = seal_from(ALICE, [BOB])
    with pytest.raises(Malformed, match="array of 5"):
        read_frame(make_skeleton(env.to_bytes()))
    with pytest.raises(Malformed, match="skeleton must be a map"):
        decode_skeleton(env.to_bytes())


def _fields(raw: bytes) -> dict[str, object]:
    value = codec.unpack(raw, what="test", max_bytes=1 << 20)
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(("field", "value", "error"), [
    ("skeleton", 2, "unsupported skeleton version"),
    ("skeleton", True, "unsupported skeleton version"),
    ("header", b"", "header must be non-empty"),
    ("header", "text", "header must be non-empty"),
    ("body_sha256", bytes(31), "body_sha256 must be 32"),
    ("body_length", -1, "body_length"),
    ("body_length", False, "body_length"),
    ("signer_key_id", bytes(15), "signer_key_id must be 16"),
    ("signature", bytes(63), "signature must be 64"),
])
def test_decode_is_strict(field: str, value: object, error: str) -> None:
    fields = _fields(make_skeleton(seal_from(ALICE, [BOB]).to_bytes()))
    fields[field] = value
    with pytest.raises(Malformed, match=error):
        decode_skeleton(codec.pack(fields))


def test_decode_refuses_missing_extra_and_oversize() -> None:
    fields = _fields(make_skeleton(seal_from(ALICE, [BOB]).to_bytes()))
    with pytest.raises(Malformed, match="missing"):
        decode_skeleton(codec.pack({k: v for k, v in fields.items() if k != "signature"}))
    with pytest.raises(Malformed, match="unknown"):
        decode_skeleton(codec.pack({**fields, "body": b"x"}))
    with pytest.raises(LimitExceeded):
        decode_skeleton(codec.pack({**fields, "header": bytes(20_000)}))


def test_a_frame_that_is_not_one_makes_no_skeleton() -> None:
    with pytest.raises(Malformed):
        make_skeleton(b"\x93\x01\x02\x03")


@settings(max_examples=60, deadline=None)
@given(header=st.binary(min_size=1, max_size=2048), body_sha256=st.binary(min_size=32, max_size=32),
       body_length=st.integers(0, 1 << 20), key_id=st.binary(min_size=16, max_size=16),
       signature=st.binary(min_size=64, max_size=64))
def test_round_trip(header: bytes, body_sha256: bytes, body_length: int, key_id: bytes,
                    signature: bytes) -> None:
    skeleton = Skeleton(header, body_sha256, body_length, key_id, signature)
    raw = skeleton.to_bytes()
    assert decode_skeleton(raw) == skeleton
    assert decode_skeleton(raw).to_bytes() == raw  # canonical: one encoding only


@settings(max_examples=20, deadline=None)
@given(plaintext=st.binary(max_size=4096))
def test_round_trip_from_real_frames(plaintext: bytes) -> None:
    env = seal_from(ALICE, [BOB], plaintext=plaintext)
    skeleton = skeleton_of(env.to_bytes())
    assert decode_skeleton(skeleton.to_bytes()) == skeleton
    assert skeleton.header() == env.header
