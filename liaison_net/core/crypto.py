"""The only module of liaison_net that touches PyNaCl.

Everything else in the core calls these recipes: sign/verify (Ed25519), seal/unseal of a
content key to one recipient (X25519 sealed box), and authenticated encryption of the
content (XChaCha20-Poly1305 with the canonical header as associated data). Every failure
of the library becomes one of our typed errors here (``_mapped``), so no nacl exception
leaks out: a failure caused by bytes from the other side is theirs (a ``Refused``), one of
our own keys or of the library is ours (``NodeFault``).

Every public key that arrives from outside is checked where it enters, before anything
stores or uses it (``check_signing_public``, ``check_encryption_public``): a canonical
encoding, on the curve, not of small order. A low-order X25519 key makes every Diffie-Hellman
with it all zero, so "sealed for" it means sealed for everyone; libsodium refuses such a
shared secret, and the refusal used to escape as an untyped error out of a node's loops.

Secrets at rest (an officer's keystore) are sealed under a passphrase: Argon2id stretches
it with a random salt into a SecretBox (XSalsa20-Poly1305) key.

Key ids are the first 16 bytes of SHA-256 over a type label and the public key: stable,
short enough for a header, and unable to confuse a signing key with an encryption key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import nacl.bindings as _b
import nacl.exceptions as _nacl_exc
import nacl.public as _public
import nacl.pwhash.argon2id as _argon2id
import nacl.secret as _secret
import nacl.signing as _signing
import nacl.utils as _utils

from liaison_net.errors import (
    BadSignature,
    CannotOpen,
    LiaisonError,
    Malformed,
    NodeFault,
    WeakKey,
)

KEY_ID_BYTES = 16
PUBLIC_KEY_BYTES = 32
SECRET_SEED_BYTES = 32
SIGNATURE_BYTES = 64
CONTENT_KEY_BYTES = _b.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
NONCE_BYTES = _b.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
AEAD_TAG_BYTES = _b.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
WRAPPED_KEY_BYTES = CONTENT_KEY_BYTES + _b.crypto_box_SEALBYTES  # 32 + 48

_SIGNING_LABEL = b"liaison-net/ed25519\x00"
_ENCRYPTION_LABEL = b"liaison-net/x25519\x00"


#: What PyNaCl raises: its own CryptoError tree (whose RuntimeError, ValueError and
#: TypeError also derive from the builtins) and builtin ValueError/TypeError from cffi.
_NACL_ERRORS = (_nacl_exc.CryptoError, ValueError, TypeError)


@contextlib.contextmanager
def _mapped(error: type[LiaisonError], detail: str) -> Iterator[None]:
    """Translate any PyNaCl failure inside the block into ``error(detail)``, once, here."""
    try:
        yield
    except _NACL_ERRORS as exc:
        raise error(detail) from exc


def _check_len(name: str, value: bytes, expected: int) -> None:
    if not isinstance(value, bytes) or len(value) != expected:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise Malformed(f"{name} must be {expected} bytes, got {got}")


# --- public keys from outside ---------------------------------------------------------------
#
# X25519 (RFC 7748): a key is the u-coordinate, 32 bytes little-endian. Every key an honest
# party makes (crypto_scalarmult_base) is canonical: below p = 2^255 - 19, top bit clear. The
# points of small order, on the curve and on its twist, have the u-coordinates 0, 1, p - 1
# and two of order 8; their other encodings (u + p, the top bit set) are the "12 blacklisted
# values" of the literature. Two checks cover them all: (1) the encoding is canonical, so
# no alias reaches the curve code; (2) X25519 with a fixed clamped scalar, a multiple of the
# cofactor, gives the all-zero output exactly when the point has small order, and libsodium
# refuses an all-zero shared secret (here, in the sealed box, and when opening one).
#
# Ed25519: crypto_core_ed25519_is_valid_point checks a canonical encoding, on the curve, in
# the prime-order subgroup, and not of small order (the identity included), which is what
# every public key a signer derives from a seed is.

_P25519 = 2**255 - 19
_X25519_PROBE = bytes([0x08]) + bytes(30) + bytes([0x40])  # clamped: 2^254 + 8, a multiple of 8


def check_encryption_public(public: bytes, what: str) -> bytes:
    """``public`` if it is a usable X25519 public key, else WeakKey naming ``what``."""
    _check_len(what, public, PUBLIC_KEY_BYTES)
    if public[31] & 0x80 or int.from_bytes(public, "little") >= _P25519:
        raise WeakKey(f"{what} is not a canonical X25519 public key")
    try:
        # libsodium refuses (-1) an all-zero result itself; tests/core/test_keys.py checks
        # that it still does, so no second comparison here that no test could reach.
        _b.crypto_scalarmult(_X25519_PROBE, public)
    except _NACL_ERRORS as exc:
        raise WeakKey(f"{what} is a low-order X25519 point (all-zero shared secret)") from exc
    return public


def check_signing_public(public: bytes, what: str) -> bytes:
    """``public`` if it is a usable Ed25519 public key, else WeakKey naming ``what``."""
    _check_len(what, public, PUBLIC_KEY_BYTES)
    if not _b.crypto_core_ed25519_is_valid_point(public):
        raise WeakKey(f"{what} is not a valid Ed25519 public key (non-canonical, off the "
                      "curve, outside the prime-order group or of small order)")
    return public


def signing_key_id(public_key: bytes) -> bytes:
    """The id under which an Ed25519 public key is named in headers and directories."""
    _check_len("signing public key", public_key, PUBLIC_KEY_BYTES)
    return hashlib.sha256(_SIGNING_LABEL + public_key).digest()[:KEY_ID_BYTES]


def encryption_key_id(public_key: bytes) -> bytes:
    """The id under which an X25519 public key is named in headers and directories."""
    _check_len("encryption public key", public_key, PUBLIC_KEY_BYTES)
    return hashlib.sha256(_ENCRYPTION_LABEL + public_key).digest()[:KEY_ID_BYTES]


def random_bytes(n: int) -> bytes:
    """Cryptographically secure random bytes (content keys, nonces, id entropy)."""
    with _mapped(NodeFault, "the random number generator failed"):
        return bytes(_utils.random(n))


@dataclass(frozen=True, repr=False)
class SigningKeyPair:
    """An Ed25519 key pair; ``seed`` is the 32-byte secret, never logged (no repr)."""

    seed: bytes
    public: bytes

    @property
    def key_id(self) -> bytes:
        return signing_key_id(self.public)

    @functools.cached_property
    def secret_key(self) -> bytes:
        """libsodium's 64-byte secret key of ``seed`` (seed || its own public key), derived
        once per key object: the derivation is a base-point multiplication (~15 µs, as much
        as the signature), which ``SigningKey(seed)`` did on every ``sign``. Derived from
        the seed, never from ``public``: a pair whose ``public`` is not its seed's still
        signs under the seed. Kept with the key object, gone with it; not a field (no
        equality, no repr)."""
        return bytes(_b.crypto_sign_seed_keypair(self.seed)[1])

    def __repr__(self) -> str:
        return f"SigningKeyPair(key_id={self.key_id.hex()})"


@dataclass(frozen=True, repr=False)
class EncryptionKeyPair:
    """An X25519 key pair; ``secret`` is the 32-byte private scalar, never logged."""

    secret: bytes
    public: bytes

    @property
    def key_id(self) -> bytes:
        return encryption_key_id(self.public)

    def __repr__(self) -> str:
        return f"EncryptionKeyPair(key_id={self.key_id.hex()})"


def generate_signing_key() -> SigningKeyPair:
    with _mapped(NodeFault, "Ed25519 key generation failed"):
        key = _signing.SigningKey.generate()
        return SigningKeyPair(seed=bytes(key), public=bytes(key.verify_key))


def signing_key_from_seed(seed: bytes) -> SigningKeyPair:
    _check_len("signing seed", seed, SECRET_SEED_BYTES)
    with _mapped(Malformed, "signing seed is not a usable Ed25519 seed"):
        key = _signing.SigningKey(seed)
        return SigningKeyPair(seed=bytes(key), public=bytes(key.verify_key))


def generate_encryption_key() -> EncryptionKeyPair:
    with _mapped(NodeFault, "X25519 key generation failed"):
        key = _public.PrivateKey.generate()
        return EncryptionKeyPair(secret=bytes(key), public=bytes(key.public_key))


def encryption_key_from_secret(secret: bytes) -> EncryptionKeyPair:
    _check_len("encryption secret", secret, SECRET_SEED_BYTES)
    with _mapped(Malformed, "encryption secret is not a usable X25519 secret"):
        key = _public.PrivateKey(secret)
        return EncryptionKeyPair(secret=bytes(key), public=bytes(key.public_key))


def sign(key: SigningKeyPair, message: bytes) -> bytes:
    """A detached Ed25519 signature over ``message``."""
    if not isinstance(message, bytes):
        raise Malformed("the message to sign must be bytes")
    with _mapped(NodeFault, "signing failed: the signing key is damaged"):
        # crypto_sign gives signature || message; the signature is its first 64 bytes.
        return bytes(_b.crypto_sign(message, key.secret_key)[:SIGNATURE_BYTES])


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise BadSignature unless ``signature`` is valid for ``message`` under the key."""
    _check_len("signing public key", public_key, PUBLIC_KEY_BYTES)
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise BadSignature("signature must be 64 bytes")
    try:
        # What ``VerifyKey(public_key).verify(message, signature)`` does, without building
        # the key object per call: libsodium's crypto_sign_open over signature || message.
        _b.crypto_sign_open(signature + message, public_key)
    except (_nacl_exc.BadSignatureError, _nacl_exc.CryptoError, ValueError, TypeError) as exc:
        raise BadSignature("signature does not verify") from exc


def new_content_key() -> bytes:
    return random_bytes(CONTENT_KEY_BYTES)


def new_nonce() -> bytes:
    return random_bytes(NONCE_BYTES)


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """XChaCha20-Poly1305: ciphertext with its tag, bound to ``associated_data``."""
    _check_len("content key", key, CONTENT_KEY_BYTES)
    _check_len("nonce", nonce, NONCE_BYTES)
    with _mapped(Malformed, "plaintext and associated data must be bytes"):
        return bytes(
            _b.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated_data, nonce, key)
        )


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Inverse of aead_encrypt; any change to ciphertext or associated data raises CannotOpen."""
    _check_len("content key", key, CONTENT_KEY_BYTES)
    _check_len("nonce", nonce, NONCE_BYTES)
    try:
        return bytes(
            _b.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, associated_data, nonce, key)
        )
    except (_nacl_exc.CryptoError, ValueError, TypeError) as exc:
        raise CannotOpen("content does not authenticate (tampered or wrong key)") from exc


def wrap_key(recipient_public: bytes, content_key: bytes) -> bytes:
    """Seal the content key so only the holder of the recipient's X25519 secret opens it.

    The recipient key comes from a directory, that is from outside: a weak one (a card
    stored before keys were checked) is WeakKey here, never sealed to and never untyped.
    """
    check_encryption_public(recipient_public, "recipient encryption key")
    _check_len("content key", content_key, CONTENT_KEY_BYTES)
    with _mapped(WeakKey, "recipient encryption key refused by the sealed box"):
        box = _public.SealedBox(_public.PublicKey(recipient_public))
        return bytes(box.encrypt(content_key))


def unwrap_key(recipient: EncryptionKeyPair, wrapped: bytes) -> bytes:
    """Open a wrapped content key; raise CannotOpen if it was not sealed for this key (a
    low-order ephemeral key in the wrap, an all-zero shared secret, is refused the same)."""
    if not isinstance(wrapped, bytes) or len(wrapped) != WRAPPED_KEY_BYTES:
        raise CannotOpen("wrapped key has the wrong size")
    try:
        box = _public.SealedBox(_public.PrivateKey(recipient.secret))
        key = bytes(box.decrypt(wrapped))
    except (_nacl_exc.CryptoError, ValueError, TypeError) as exc:
        raise CannotOpen("wrapped key was not sealed for this recipient key") from exc
    if len(key) != CONTENT_KEY_BYTES:
        raise CannotOpen("wrapped key has the wrong size")
    return key


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets (tokens, MACs) without leaking where they differ."""
    return hmac.compare_digest(a, b)


# --- secrets at rest under a passphrase -----------------------------------------------------
#
# blob = version (1) || salt (16) || opslimit (u32 BE) || memlimit (u32 BE) || SecretBox
# The KDF parameters travel with the blob so they can be raised later without breaking old
# keystores. They are not separately authenticated, and need not be: a changed salt or
# parameter derives another key, and the box then refuses to open. Bounds on them stop a
# crafted file from asking for gigabytes of memory before the MAC is even checked.

PASSPHRASE_BLOB_VERSION = 1
PWHASH_SALT_BYTES = _argon2id.SALTBYTES  # 16
#: libsodium's INTERACTIVE limits (2 passes, 64 MiB): about 0.05 s, so the CLI and the
#: tests stay quick, and still memory-hard enough to make offline guessing expensive.
PWHASH_OPSLIMIT = _argon2id.OPSLIMIT_INTERACTIVE
PWHASH_MEMLIMIT = _argon2id.MEMLIMIT_INTERACTIVE
#: MODERATE (3 passes, 256 MiB, about 0.4 s), for callers that want more.
PWHASH_OPSLIMIT_MODERATE = _argon2id.OPSLIMIT_MODERATE
PWHASH_MEMLIMIT_MODERATE = _argon2id.MEMLIMIT_MODERATE
_MAX_OPSLIMIT = 16
_MAX_MEMLIMIT = _argon2id.MEMLIMIT_SENSITIVE  # 1 GiB
_PASSPHRASE_HEADER = struct.Struct(">B16sII")
_WRONG_PASSPHRASE = "wrong passphrase or damaged keystore"


def _passphrase_key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    # Unmapped on purpose: each caller maps it (ours when sealing, CannotOpen when opening).
    return bytes(_argon2id.kdf(_secret.SecretBox.KEY_SIZE, passphrase, salt,
                               opslimit=opslimit, memlimit=memlimit))


def seal_with_passphrase(data: bytes, passphrase: bytes, *, opslimit: int = PWHASH_OPSLIMIT,
                         memlimit: int = PWHASH_MEMLIMIT) -> bytes:
    """Encrypt and authenticate ``data`` under a key stretched from ``passphrase``."""
    if not isinstance(data, bytes) or not isinstance(passphrase, bytes):
        raise Malformed("data and passphrase must be bytes")
    if not passphrase:
        raise Malformed("passphrase must not be empty")
    if not (_argon2id.OPSLIMIT_MIN <= opslimit <= _MAX_OPSLIMIT
            and _argon2id.MEMLIMIT_MIN <= memlimit <= _MAX_MEMLIMIT):
        raise Malformed("passphrase KDF limits out of range")
    salt = random_bytes(PWHASH_SALT_BYTES)
    with _mapped(NodeFault, "sealing under the passphrase failed (out of memory?)"):
        key = _passphrase_key(passphrase, salt, opslimit, memlimit)
        box = bytes(_secret.SecretBox(key).encrypt(data))  # random 24-byte nonce || ciphertext
    return _PASSPHRASE_HEADER.pack(PASSPHRASE_BLOB_VERSION, salt, opslimit, memlimit) + box


def open_with_passphrase(blob: bytes, passphrase: bytes) -> bytes:
    """Inverse of seal_with_passphrase; any wrong passphrase or changed byte: CannotOpen."""
    minimum = (_PASSPHRASE_HEADER.size + _secret.SecretBox.NONCE_SIZE
               + _secret.SecretBox.MACBYTES)
    if not isinstance(blob, bytes) or not isinstance(passphrase, bytes) or len(blob) < minimum:
        raise CannotOpen(_WRONG_PASSPHRASE)
    version, salt, opslimit, memlimit = _PASSPHRASE_HEADER.unpack_from(blob)
    if (version != PASSPHRASE_BLOB_VERSION
            or not _argon2id.OPSLIMIT_MIN <= opslimit <= _MAX_OPSLIMIT
            or not _argon2id.MEMLIMIT_MIN <= memlimit <= _MAX_MEMLIMIT):
        raise CannotOpen(_WRONG_PASSPHRASE)
    try:
        key = _passphrase_key(passphrase, salt, opslimit, memlimit)
        return bytes(_secret.SecretBox(key).decrypt(blob[_PASSPHRASE_HEADER.size:]))
    except (_nacl_exc.CryptoError, ValueError, TypeError) as exc:
        raise CannotOpen(_WRONG_PASSPHRASE) from exc


# --- oblivious PRF for subject pseudonyms (2HashDH over edwards25519) -----------------------
#
# Thin, validating wrappers over libsodium's group arithmetic on the prime-order subgroup of
# edwards25519; the protocol itself (blind, evaluate, finalize) lives in core/pseudonym.py and
# docs/pseudonyms.md explains it. Points are 32-byte compressed encodings, scalars 32-byte
# little-endian integers modulo the group order L. Every point that arrives from outside is
# checked with crypto_core_ed25519_is_valid_point: canonical encoding, on the curve, in the
# main subgroup, not of small order (the identity included). A point that fails, or a scalar
# that is zero or not reduced, is Malformed; nothing reaches the scalar multiplication
# unchecked. PyNaCl 1.6 has no binding for crypto_core_ed25519_scalar_random, so random
# scalars are 64 random bytes reduced modulo L (a bias below 2^-250).

POINT_BYTES = _b.crypto_core_ed25519_BYTES  # 32
SCALAR_BYTES = _b.crypto_core_ed25519_SCALARBYTES  # 32
WIDE_SCALAR_BYTES = _b.crypto_core_ed25519_NONREDUCEDSCALARBYTES  # 64
_OPRF_KEY_LABEL = b"liaison-net/oprf-ed25519\x00"
_HASH_TO_GROUP_LABEL = b"liaison-net/hash-to-group/ed25519-elligator2-x2\x00"
_MAX_DOMAIN_BYTES = 255
_ZERO_SCALAR = bytes(SCALAR_BYTES)


def is_valid_point(point: bytes) -> bool:
    """True iff ``point`` is a canonical, prime-order-subgroup, non-small-order point."""
    return (isinstance(point, bytes) and len(point) == POINT_BYTES
            and bool(_b.crypto_core_ed25519_is_valid_point(point)))


def _check_point(name: str, point: bytes) -> None:
    _check_len(name, point, POINT_BYTES)
    if not _b.crypto_core_ed25519_is_valid_point(point):
        raise Malformed(f"{name} is not a valid point of the prime-order group "
                        "(off the curve, non-canonical, small order or the identity)")


def _check_scalar(name: str, scalar: bytes) -> None:
    _check_len(name, scalar, SCALAR_BYTES)
    if scalar == _ZERO_SCALAR:
        raise Malformed(f"{name} must not be zero")
    if _b.crypto_core_ed25519_scalar_reduce(scalar + _ZERO_SCALAR) != scalar:
        raise Malformed(f"{name} is not reduced modulo the group order")


def scalar_reduce(wide: bytes) -> bytes:
    """A 64-byte string reduced modulo L: a scalar; refuses the (negligible) zero result."""
    _check_len("wide scalar", wide, WIDE_SCALAR_BYTES)
    with _mapped(Malformed, "wide scalar cannot be reduced"):
        scalar = bytes(_b.crypto_core_ed25519_scalar_reduce(wide))
    if scalar == _ZERO_SCALAR:
        raise Malformed("wide scalar reduces to zero")
    return scalar


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar (a blinding factor or a key)."""
    while True:
        with _mapped(NodeFault, "scalar reduction failed"):
            scalar = bytes(_b.crypto_core_ed25519_scalar_reduce(random_bytes(WIDE_SCALAR_BYTES)))
        if scalar != _ZERO_SCALAR:
            return scalar


def scalar_invert(scalar: bytes) -> bytes:
    """The inverse of a non-zero scalar modulo L."""
    _check_scalar("scalar", scalar)
    try:
        return bytes(_b.crypto_core_ed25519_scalar_invert(scalar))
    except (_nacl_exc.CryptoError, ValueError, TypeError) as exc:  # only zero, checked above
        raise Malformed("scalar has no inverse") from exc


def hash_to_group(domain: bytes, data: bytes) -> bytes:
    """Hash ``data`` to a point of the prime-order group, separated by ``domain``.

    SHA-512 of the label, the length-prefixed domain and the data gives 64 bytes; each half
    goes through Elligator 2 (crypto_core_ed25519_from_uniform, which also clears the
    cofactor) and the two points are added. One Elligator call alone reaches only about half
    of the group and its image is distinguishable from random; the sum of two is the
    random-oracle shape of RFC 9380 (hash_to_curve), which 2HashDH's proof assumes.
    """
    if not isinstance(domain, bytes) or not 0 < len(domain) <= _MAX_DOMAIN_BYTES:
        raise Malformed(f"hash-to-group domain must be 1 to {_MAX_DOMAIN_BYTES} bytes")
    if not isinstance(data, bytes):
        raise Malformed("hash-to-group data must be bytes")
    digest = hashlib.sha512(_HASH_TO_GROUP_LABEL + bytes([len(domain)]) + domain + data).digest()
    with _mapped(Malformed, "data does not hash to a point of the group"):
        first = bytes(_b.crypto_core_ed25519_from_uniform(digest[:32]))
        second = bytes(_b.crypto_core_ed25519_from_uniform(digest[32:]))
        point = bytes(_b.crypto_core_ed25519_add(first, second))
    if not _b.crypto_core_ed25519_is_valid_point(point):  # the identity: probability ~2^-252
        raise Malformed("data hashes to the identity point")
    return point


def point_mul(scalar: bytes, point: bytes) -> bytes:
    """scalar * point, after checking both; the point may come from the other side."""
    _check_scalar("scalar", scalar)
    _check_point("point", point)
    try:
        return bytes(_b.crypto_scalarmult_ed25519_noclamp(scalar, point))
    except (_nacl_exc.CryptoError, ValueError, TypeError) as exc:  # refused by libsodium
        raise Malformed("scalar multiplication refused the point") from exc


def new_oprf_key() -> bytes:
    """A fresh network pseudonym (OPRF) key: a random non-zero scalar. Secret."""
    return random_scalar()


def oprf_public_key(key: bytes) -> bytes:
    """key * G, the public point that names an OPRF key (never used to evaluate)."""
    _check_scalar("OPRF key", key)
    with _mapped(Malformed, "OPRF key gives no public point"):
        return bytes(_b.crypto_scalarmult_ed25519_base_noclamp(key))


def oprf_key_id(public_point: bytes) -> bytes:
    """The id under which an OPRF key is named: SHA-256(label || key*G), first 16 bytes."""
    _check_point("OPRF public key", public_point)
    return hashlib.sha256(_OPRF_KEY_LABEL + public_point).digest()[:KEY_ID_BYTES]
