"""Rotation and revocation statements: each forgery, replay and usurpation has its own error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, crypto
from liaison_net.core.rotation import (
    Revocation,
    Rotation,
    Subject,
    sign_revocation,
    sign_rotation,
    verify_revocation,
    verify_rotation,
)
from liaison_net.errors import BadSignature, Conflict, Forbidden, Malformed, Refused, UnknownKey
from tests.core.factories import NOW

OLD = crypto.generate_signing_key()
NEW = crypto.generate_signing_key()
ENC = crypto.generate_encryption_key()
NL = crypto.generate_signing_key()
LU = crypto.generate_signing_key()
NODES = {"nl": NL.public, "lu": LU.public}


def _rotation(serial: int = 2) -> Rotation:
    return Rotation(Subject.OFFICER, "nl/jdevries", OLD.key_id, NEW.public, ENC.public,
                    serial, NOW, NOW + 3_600_000)


def _revocation(authority: str = "nl") -> Revocation:
    return Revocation(Subject.OFFICER, "nl/jdevries", OLD.key_id, "laptop stolen", 1, NOW,
                      authority)


def test_rotation_round_trip() -> None:
    raw = sign_rotation(_rotation(), OLD)
    assert verify_rotation(raw, old_public=OLD.public, last_serial=1) == _rotation()


def test_rotation_with_bad_signature_is_refused() -> None:
    body, _sig = codec.unpack(sign_rotation(_rotation(), OLD), what="t", max_bytes=4096)
    forged = codec.pack([body, crypto.sign(NEW, b"x")])
    with pytest.raises(BadSignature):
        verify_rotation(forged, old_public=OLD.public, last_serial=1)


def test_replayed_old_rotation_is_refused() -> None:
    raw = sign_rotation(_rotation(serial=2), OLD)
    with pytest.raises(Conflict, match="replayed"):
        verify_rotation(raw, old_public=OLD.public, last_serial=2)


def test_rotation_signed_by_new_key_is_refused() -> None:
    with pytest.raises(Malformed):
        sign_rotation(_rotation(), NEW)


def test_revocation_round_trip() -> None:
    assert verify_revocation(sign_revocation(_revocation(), NL), NODES) == _revocation()


def test_revocation_from_a_non_authority_is_refused() -> None:
    """LU cannot revoke a Dutch officer's key, even with a valid LU signature."""
    rev = _revocation(authority="lu")
    raw = codec.pack([rev.authority, codec.pack(rev.to_wire()),
                      crypto.sign(LU, b"liaison-net/key-revocation/v1\x00"
                                  + codec.pack(rev.to_wire()))])
    with pytest.raises(Forbidden, match="no authority"):
        verify_revocation(raw, NODES)
    with pytest.raises(Forbidden):
        sign_revocation(rev, LU)


def test_revocation_from_unknown_node_or_forged_is_refused() -> None:
    raw = sign_revocation(_revocation(), NL)
    with pytest.raises(UnknownKey):
        verify_revocation(raw, {"lu": LU.public})
    with pytest.raises(BadSignature):
        verify_revocation(raw, {"nl": LU.public})


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(index: int, bit: int) -> None:
    for raw, check in (
        (sign_rotation(_rotation(), OLD),
         lambda r: verify_rotation(r, old_public=OLD.public, last_serial=1)),
        (sign_revocation(_revocation(), NL), lambda r: verify_revocation(r, NODES)),
    ):
        mangled = bytearray(raw)
        mangled[index % len(raw)] ^= 1 << bit
        with pytest.raises(Refused):
            check(bytes(mangled))
