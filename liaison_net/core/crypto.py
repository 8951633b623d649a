"""The only module of liaison_net that touches PyNaCl.

Everything else in the core calls these recipes: sign/verify (Ed25519), seal/unseal of a
content key to one recipient (X25519 sealed box), and authenticated encryption of the
content (XChaCha20-Poly1305 with the canonical header as associated data). Every failure
of the library becomes one of our typed errors here, so no nacl exception leaks out.

Secrets at rest (an officer's keystore) are sealed under a passphrase: Argon2id stretches
it with a random salt into a SecretBox (XSalsa20-Poly1305) key.

Key ids are the first 16 bytes of SHA-256 over a type label and the public key: stable,
short enough for a header, and unable to confuse a signing key with an encryption key.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

import nacl.bindings as _b
import nacl.exceptions as _nacl_exc
import nacl.public as _public
import nacl.pwhash.argon2id as _argon2id
import nacl.secret as _secret
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
