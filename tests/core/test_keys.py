"""Public keys are checked where they enter: every low-order, non-canonical or off-curve key
is refused with `weak_key` naming the key, every valid key round-trips, and no libsodium
failure leaves core/crypto.py untyped (issue 14, item 3)."""

from __future__ import annotations

import contextlib
from typing import Any

import nacl.bindings as nacl_b  # tests may build hostile points; the core may not
import nacl.exceptions as nacl_exc
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, crypto
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import (
    CARD_DOMAIN,
    EnrolmentRequest,
    OfficerCard,
    decode_stored_card,
    issue_card,
    sign_enrolment_request,
    verify_card,
    verify_enrolment_request,
)
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.rotation import (
    ROTATION_DOMAIN,
    Rotation,
    Subject,
    sign_rotation,
    verify_rotation,
)
from liaison_net.errors import BadSignature, CannotOpen, LiaisonError, Malformed, WeakKey
from tests.core.factories import NOW
from tests.core.test_pseudonym import NON_CANONICAL as ED_NON_CANONICAL
from tests.core.test_pseudonym import SMALL_ORDER as ED_SMALL_ORDER

P = 2**255 - 19
#: The small-order u-coordinates of Curve25519 and its twist, as libsodium lists them
#: (crypto_scalarmult/curve25519/ref10/x25519_ref10.c, has_small_order).
_U_ORDER_8_A = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
_U_ORDER_8_B = "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
U8A = int.from_bytes(bytes.fromhex(_U_ORDER_8_A), "little")
U8B = int.from_bytes(bytes.fromhex(_U_ORDER_8_B), "little")
#: The 12 blacklisted 256-bit values (cr.yp.to/ecdh.html): 0, 1, the two of order 8, p - 1,
#: and their encodings plus p and 2p, all below 2^256.
TWELVE = [0, 1, U8A, U8B, P - 1, P, P + 1, P + U8A, P + U8B, 2 * P - 1, 2 * P, 2 * P + 1]
X_LOW_ORDER = [u.to_bytes(32, "little") for u in TWELVE]
#: libsodium masks the top bit before comparing, so each value below 2^255 has a twin.
X_LOW_ORDER += [(u | 1 << 255).to_bytes(32, "little") for u in TWELVE if u < 1 << 255]
ALL_ZERO = bytes(32)

REQUEST_KEYS = ("signing_public", "encryption_public")


def test_the_lists_are_what_they_claim() -> None:
    """Guard against vacuous lists: 12 values and 7 twins, each a small-order u-coordinate
    read as a plain 256-bit number or with the top bit masked (RFC 7748); libsodium itself
    refuses X25519 with each of the latter. (test_pseudonym guards the Ed25519 list.)"""
    small, mask = {0, 1, U8A, U8B, P - 1}, (1 << 255) - 1
    assert len(set(X_LOW_ORDER)) == 12 + 7
    masked_small = 0
    for pk in X_LOW_ORDER:
        u = int.from_bytes(pk, "little")
        assert u % P in small or (u & mask) % P in small
        if (u & mask) % P in small:
            masked_small += 1
            with pytest.raises(nacl_exc.CryptoError):
                nacl_b.crypto_scalarmult(b"\x08" + bytes(30) + b"\x40", pk)
    assert masked_small == 14


# --- the validators -------------------------------------------------------------------------


@pytest.mark.parametrize("pk", X_LOW_ORDER, ids=lambda pk: pk.hex()[:8] + ".." + pk.hex()[-4:])
def test_every_low_order_x25519_encoding_is_refused(pk: bytes) -> None:
    with pytest.raises(WeakKey, match="officer's key"):
        crypto.check_encryption_public(pk, "officer's key")
    with pytest.raises(WeakKey, match="recipient encryption key"):
        crypto.wrap_key(pk, crypto.new_content_key())


def test_a_non_canonical_encoding_of_a_usable_x25519_key_is_refused() -> None:
    """The top bit set, or u + p: libsodium would compute with the alias; we refuse it, so one
    key has one encoding (and one key id). This fails if only the small-order check is left."""
    good = crypto.generate_encryption_key().public
    aliased = good[:31] + bytes([good[31] | 0x80])
    assert crypto.check_encryption_public(good, "k") == good
    with pytest.raises(WeakKey, match="not a canonical"):
        crypto.check_encryption_public(aliased, "k")
    with pytest.raises(WeakKey, match="recipient encryption key is not a canonical"):
        crypto.wrap_key(aliased, crypto.new_content_key())  # libsodium alone would seal
    for u in range(2, 19):  # u + p < 2^255 only for u < 19; 0 and 1 are of small order
        with pytest.raises(WeakKey, match="not a canonical"):
            crypto.check_encryption_public((u + P).to_bytes(32, "little"), "k")


@pytest.mark.parametrize("pk", [*ED_SMALL_ORDER, *ED_NON_CANONICAL],
                         ids=lambda pk: pk.hex()[:8] + ".." + pk.hex()[-4:])
def test_every_small_order_or_non_canonical_ed25519_key_is_refused(pk: bytes) -> None:
    with pytest.raises(WeakKey, match="node key"):
        crypto.check_signing_public(pk, "node key")


def test_an_ed25519_key_with_a_small_order_component_is_refused() -> None:
    """On the curve, signatures may even verify under it, but it is outside the group."""
    mixed = bytes(nacl_b.crypto_core_ed25519_add(crypto.generate_signing_key().public,
                                                 ED_SMALL_ORDER[3]))
    with pytest.raises(WeakKey):
        crypto.check_signing_public(mixed, "k")


@pytest.mark.parametrize("value", [b"", b"\x09" * 31, b"\x09" * 33, "text", None])
def test_wrong_sizes_and_types_are_malformed(value: Any) -> None:
    for check in (crypto.check_encryption_public, crypto.check_signing_public):
        with pytest.raises(Malformed):
            check(value, "k")


@settings(max_examples=50)
@given(st.binary(min_size=32, max_size=32))
def test_any_valid_key_round_trips(secret: bytes) -> None:
    """Keys derived from any secret pass both checks, and a wrap for them opens."""
    enc = crypto.encryption_key_from_secret(secret)
    sig = crypto.signing_key_from_seed(secret)
    assert crypto.check_encryption_public(enc.public, "k") == enc.public
    assert crypto.check_signing_public(sig.public, "k") == sig.public
    content_key = crypto.new_content_key()
    assert crypto.unwrap_key(enc, crypto.wrap_key(enc.public, content_key)) == content_key
    assert crypto.verify(sig.public, b"m", crypto.sign(sig, b"m")) is None


@settings(max_examples=300)
@given(st.binary(min_size=32, max_size=32))
def test_random_32_bytes_are_a_valid_key_or_refused_typed(raw: bytes) -> None:
    """Never an untyped exception: from the validators, from wrap_key, or from verify."""
    for check in (crypto.check_encryption_public, crypto.check_signing_public):
        with contextlib.suppress(WeakKey):
            assert check(raw, "k") == raw
    with contextlib.suppress(WeakKey):
        assert len(crypto.wrap_key(raw, crypto.new_content_key())) == crypto.WRAPPED_KEY_BYTES
    with pytest.raises(BadSignature):
        crypto.verify(raw, b"m", bytes(64))


@settings(max_examples=100)
@given(st.sampled_from(X_LOW_ORDER), st.binary(min_size=48, max_size=48))
def test_a_wrap_whose_ephemeral_key_is_low_order_is_cannot_open(epk: bytes,
                                                                  rest: bytes) -> None:
    """The all-zero shared secret on the opening side is a typed refusal too."""
    with pytest.raises(CannotOpen):
        crypto.unwrap_key(crypto.generate_encryption_key(), epk + rest)


def test_library_failures_elsewhere_are_typed() -> None:
    """The audit of core/crypto.py: a wrong type reaching PyNaCl is one of ours."""
    key = crypto.generate_signing_key()
    bad: Any = "not bytes"
    calls = [
        lambda: crypto.sign(key, bad),
        lambda: crypto.sign(crypto.SigningKeyPair(seed=b"short", public=key.public), b"m"),
        lambda: crypto.aead_encrypt(bytes(32), bytes(24), bad, b""),
        lambda: crypto.aead_decrypt(bytes(32), bytes(24), bad, b""),
        lambda: crypto.unwrap_key(crypto.EncryptionKeyPair(secret=b"short", public=ALL_ZERO),
                                  bytes(crypto.WRAPPED_KEY_BYTES)),
        lambda: crypto.signing_key_from_seed(bad),
        lambda: crypto.encryption_key_from_secret(bad),
        lambda: crypto.hash_to_group(b"d", bad),
    ]
    for call in calls:
        with pytest.raises(LiaisonError):
            call()


# --- where keys enter: enrolment requests, cards, rotations ---------------------------------


def _request(**keys: bytes) -> tuple[EnrolmentRequest, crypto.SigningKeyPair]:
    signing = crypto.generate_signing_key()
    request = EnrolmentRequest("nl/weak", "Weak", "liaison officer",
                               keys.get("signing_public", signing.public),
                               keys.get("encryption_public",
                                        crypto.generate_encryption_key().public), Almanac())
    return request, signing


def _self_signed(request: EnrolmentRequest, key: crypto.SigningKeyPair) -> bytes:
    """An enrolment request signed as sign_enrolment_request would, minus its key check."""
    body = codec.pack(request.to_wire())
    return codec.pack([body, crypto.sign(key, b"liaison-net/enrolment-request/v1\x00" + body)])


def test_an_enrolment_request_with_an_all_zero_x25519_key_is_refused_naming_it() -> None:
    request, signing = _request(encryption_public=ALL_ZERO)
    raw = sign_enrolment_request(request, signing)  # the officer's side does not check
    with pytest.raises(WeakKey, match="enrolment request of nl/weak encryption_public"):
        verify_enrolment_request(raw)


@pytest.mark.parametrize("pk", [X_LOW_ORDER[2], X_LOW_ORDER[-1]])
def test_an_enrolment_request_with_a_low_order_x25519_key_is_refused(pk: bytes) -> None:
    request, signing = _request(encryption_public=pk)
    with pytest.raises(WeakKey, match="encryption_public"):
        verify_enrolment_request(_self_signed(request, signing))


def test_an_enrolment_request_with_a_small_order_signing_key_is_weak_key() -> None:
    """Checked before the signature, so the refusal names the key, not the signature."""
    request, signing = _request(signing_public=ED_SMALL_ORDER[1])
    with pytest.raises(WeakKey, match="signing_public"):
        verify_enrolment_request(_self_signed(request, signing))


def test_a_valid_enrolment_request_round_trips() -> None:
    request, signing = _request()
    assert verify_enrolment_request(sign_enrolment_request(request, signing)) == request


def test_the_node_never_issues_a_card_for_a_weak_key() -> None:
    request, _ = _request(encryption_public=ALL_ZERO)
    with pytest.raises(WeakKey, match="card of nl/weak encryption_public"):
        issue_card(request, node_id="nl", node_key=crypto.generate_signing_key(), version=1,
                   now=NOW, valid_for_ms=HOUR_MS)


def weak_card(node_key: crypto.SigningKeyPair, officer: str = "nl/weak", *,
              encryption_public: bytes = ALL_ZERO,
              signing_public: bytes | None = None) -> bytes:
    """A card as a compromised node would sign it: its real key, a weak officer key."""
    card = OfficerCard(officer, "Weak", "liaison officer",
                       signing_public or crypto.generate_signing_key().public,
                       encryption_public, 1, NOW, NOW + HOUR_MS, Almanac())
    body = codec.pack(card.to_wire())
    return codec.pack([body, crypto.sign(node_key, CARD_DOMAIN + body)])


@pytest.mark.parametrize("key", REQUEST_KEYS)
def test_a_card_signed_by_the_real_node_key_with_a_weak_key_is_refused(key: str) -> None:
    node = crypto.generate_signing_key()
    raw = (weak_card(node) if key == "encryption_public" else
           weak_card(node, encryption_public=crypto.generate_encryption_key().public,
                     signing_public=ED_SMALL_ORDER[0]))
    with pytest.raises(WeakKey, match=f"officer card of nl/weak {key}"):
        verify_card(raw, node_public=node.public, node_id="nl", now=NOW)
    # The store's own reader stays lenient, so old rows still load (and are caught at use).
    assert decode_stored_card(raw).officer == "nl/weak"


OLD = crypto.generate_signing_key()


def _rotation(signing: bytes, encryption: bytes | None) -> Rotation:
    return Rotation(Subject.OFFICER, "nl/jdevries", OLD.key_id, signing, encryption, 2, NOW,
                    NOW + HOUR_MS)


def _signed_rotation(rotation: Rotation) -> bytes:
    body = codec.pack(rotation.to_wire())
    return codec.pack([body, crypto.sign(OLD, ROTATION_DOMAIN + body)])


@pytest.mark.parametrize("which", ["new_signing_public", "new_encryption_public"])
def test_a_rotation_to_a_weak_key_is_refused_naming_it(which: str) -> None:
    good_sig, good_enc = crypto.generate_signing_key().public, crypto.generate_encryption_key()
    rotation = (_rotation(ED_SMALL_ORDER[2], good_enc.public) if which == "new_signing_public"
                else _rotation(good_sig, X_LOW_ORDER[3]))
    with pytest.raises(WeakKey, match=which):
        sign_rotation(rotation, OLD)
    with pytest.raises(WeakKey, match=f"rotation of nl/jdevries {which}"):
        verify_rotation(_signed_rotation(rotation), old_public=OLD.public, last_serial=1)


def test_a_node_rotation_to_a_weak_signing_key_is_refused() -> None:
    rotation = Rotation(Subject.NODE, "nl", OLD.key_id, ED_SMALL_ORDER[1], None, 2, NOW,
                        NOW + HOUR_MS)
    with pytest.raises(WeakKey, match="new_signing_public"):
        verify_rotation(_signed_rotation(rotation), old_public=OLD.public, last_serial=1)


@settings(max_examples=100)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_cards_with_random_keys_are_believed_or_refused_typed(signing: bytes,
                                                              encryption: bytes) -> None:
    node = crypto.generate_signing_key()
    raw = weak_card(node, signing_public=signing, encryption_public=encryption)
    try:
        card = verify_card(raw, node_public=node.public, node_id="nl", now=NOW)
    except WeakKey:
        return
    assert (card.signing_public, card.encryption_public) == (signing, encryption)


@settings(max_examples=30)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=2048))
def test_a_signature_is_pynacls_of_the_seed(seed: bytes, message: bytes) -> None:
    """``sign`` uses the seed's expanded secret key, derived once per key (``secret_key``):
    the signature is PyNaCl's ``SigningKey(seed)``'s, twice in a row (the cached key)."""
    key = crypto.signing_key_from_seed(seed)
    expected = bytes(nacl.signing.SigningKey(seed).sign(message).signature)
    assert crypto.sign(key, message) == expected
    assert crypto.sign(key, message) == expected
    crypto.verify(key.public, message, expected)


def test_a_signature_is_the_seeds_whatever_public_key_the_pair_holds() -> None:
    """The expanded key comes from the seed alone: a pair whose public half is another
    key's signs under its seed, as before (a signature that verifies under neither would
    be a damaged key's, silently)."""
    a, b = crypto.generate_signing_key(), crypto.generate_signing_key()
    mixed = crypto.SigningKeyPair(seed=a.seed, public=b.public)
    crypto.verify(a.public, b"m", crypto.sign(mixed, b"m"))
