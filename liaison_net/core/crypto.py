"""The only module of liaison_net that touches PyNaCl.

Everything else in the core calls these recipes: sign/verify (Ed25519), seal/unseal of a
content key to one recipient (X25519 sealed box), and authenticated encryption of the
content (XChaCha20-Poly1305 with the canonical header as associated data). Every failure
of the library becomes one of our typed errors here, so no nacl exception leaks out.

Key ids are the first 16 bytes of SHA-256 over a type label and the public key: stable,
short enough for a header, and unable to confuse a signing key with an encryption key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import nacl.bindings as _b
import nacl.exceptions as _nacl_exc
import nacl.public as _public
import nacl.signing as _signing
import nacl.utils as _utils

from liaison_net.errors import BadSignature, CannotOpen, Malformed

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


def _check_len(name: str, value: bytes, expected: int) -> None:
    if not isinstance(value, bytes) or len(value) != expected:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise Malformed(f"{name} must be {expected} bytes, got {got}")


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
    return bytes(_utils.random(n))


@dataclass(frozen=True, repr=False)
class SigningKeyPair:
    """An Ed25519 key pair; ``seed`` is the 32-byte secret, never logged (no repr)."""

    seed: bytes
    public: bytes

    @property
    def key_id(self) -> bytes:
        return signing_key_id(self.public)

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
    key = _signing.SigningKey.generate()
    return SigningKeyPair(seed=bytes(key), public=bytes(key.verify_key))


def signing_key_from_seed(seed: bytes) -> SigningKeyPair:
    _check_len("signing seed", seed, SECRET_SEED_BYTES)
    key = _signing.SigningKey(seed)
    return SigningKeyPair(seed=bytes(key), public=bytes(key.verify_key))


def generate_encryption_key() -> EncryptionKeyPair:
    key = _public.PrivateKey.generate()
    return EncryptionKeyPair(secret=bytes(key), public=bytes(key.public_key))


def encryption_key_from_secret(secret: bytes) -> EncryptionKeyPair:
    _check_len("encryption secret", secret, SECRET_SEED_BYTES)
    key = _public.PrivateKey(secret)
    return EncryptionKeyPair(secret=bytes(key), public=bytes(key.public_key))


def sign(key: SigningKeyPair, message: bytes) -> bytes:
    """A detached Ed25519 signature over ``message``."""
    return bytes(_signing.SigningKey(key.seed).sign(message).signature)


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise BadSignature unless ``signature`` is valid for ``message`` under the key."""
    _check_len("signing public key", public_key, PUBLIC_KEY_BYTES)
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise BadSignature("signature must be 64 bytes")
    try:
        _signing.VerifyKey(public_key).verify(message, signature)
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
    """Seal the content key so only the holder of the recipient's X25519 secret opens it."""
    _check_len("recipient encryption key", recipient_public, PUBLIC_KEY_BYTES)
    _check_len("content key", content_key, CONTENT_KEY_BYTES)
    box = _public.SealedBox(_public.PublicKey(recipient_public))
    return bytes(box.encrypt(content_key))


def unwrap_key(recipient: EncryptionKeyPair, wrapped: bytes) -> bytes:
    """Open a wrapped content key; raise CannotOpen if it was not sealed for this key."""
    if not isinstance(wrapped, bytes) or len(wrapped) != WRAPPED_KEY_BYTES:
        raise CannotOpen("wrapped key has the wrong size")
    box = _public.SealedBox(_public.PrivateKey(recipient.secret))
    try:
        key = bytes(box.decrypt(wrapped))
    except (_nacl_exc.CryptoError, ValueError, TypeError) as exc:
        raise CannotOpen("wrapped key was not sealed for this recipient key") from exc
    if len(key) != CONTENT_KEY_BYTES:
        raise CannotOpen("wrapped key has the wrong size")
    return key


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets (tokens, MACs) without leaking where they differ."""
    return hmac.compare_digest(a, b)
