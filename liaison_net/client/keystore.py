"""The officer's keystore: private keys and home-node settings, sealed under a passphrase.

File layout::

    MAGIC ("liaison-net keystore\\n") || crypto.seal_with_passphrase(canonical msgpack)

    {"version": 2, "officer": "nl/jdevries", "signing_seed": bin(32),
     "encryption_secrets": [bin(32), ...],   # newest first; old ones open old envelopes
     "node_url": "https://host:port", "ca_cert_pem": bin,
     "request": bin | nil}   # the signed enrolment request `officer init` made

Version 1 had no "request"; it still loads (with none), and is saved as version 2.
``export_request`` re-signs the kept request with the current keys, so an officer can hand
the same card request (name, role, almanac entry) over again, after a rotation too.

The keys are generated here, on the officer's machine, and never leave it: the home node
only ever sees the enrolment request, which carries the public halves. The file is written
0600 from its first byte and replaced atomically (``certificates.write_secret``), so a crash while
saving leaves the previous keystore intact. Nothing here prints or logs a key; the
``Keystore`` repr shows key ids only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from liaison_net.core import codec, crypto, rotation
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import (
    EnrolmentRequest,
    sign_enrolment_request,
    verify_enrolment_request,
)
from liaison_net.core.ids import check_officer_id, node_of
from liaison_net.errors import CannotOpen, ConfigError, Conflict, Malformed, Refused
from liaison_net.pki import certificates

MAGIC = b"liaison-net keystore\n"
VERSION = 2
MIN_PASSPHRASE_CHARS = 8
MAX_KEYSTORE_BYTES = 256 * 1024
MAX_ENCRYPTION_KEYS = 32
_FIELDS_V1 = {"version", "officer", "signing_seed", "encryption_secrets", "node_url",
              "ca_cert_pem"}
_FIELDS = _FIELDS_V1 | {"request"}


@dataclass(frozen=True, repr=False)
class Keystore:
    officer: str
    signing: crypto.SigningKeyPair
    encryption_keys: tuple[crypto.EncryptionKeyPair, ...]  # newest first, never empty
    node_url: str  # https://host:port of the home node's officer API
    ca_cert_pem: bytes  # the network CA: the only certificate the client trusts
    request: bytes | None = None  # the signed enrolment request (None: a v1 keystore)

    @property
    def node(self) -> str:
        return node_of(self.officer)

    @property
    def encryption(self) -> crypto.EncryptionKeyPair:
        """The current encryption key (what the officer's card announces)."""
        return self.encryption_keys[0]

    def __repr__(self) -> str:
        return (f"Keystore(officer={self.officer!r}, signing={self.signing.key_id.hex()}, "
                f"encryption={[k.key_id.hex() for k in self.encryption_keys]}, "
                f"node_url={self.node_url!r})")

    def to_wire(self) -> dict[str, Any]:
        return {"version": VERSION, "officer": self.officer,
                "signing_seed": self.signing.seed,
                "encryption_secrets": [k.secret for k in self.encryption_keys],
                "node_url": self.node_url, "ca_cert_pem": self.ca_cert_pem,
                "request": self.request}


def check_node_url(url: str) -> str:
    """The home node's officer API: https://host:port, nothing else (no path, no query)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if (parts.scheme != "https" or not parts.hostname or port is None
            or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username):
        raise ConfigError(f"node URL must be https://host:port, got {url!r:.80}")
    return url.rstrip("/")


def check_ca_pem(pem: bytes) -> x509.Certificate:
    """The network CA certificate the keystore pins: one PEM certificate, a CA."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, TypeError, x509.ExtensionNotFound):
        raise ConfigError("the CA file is not a PEM CA certificate") from None
    if not constraints.ca:
        raise ConfigError("the CA file holds a certificate that is not a CA")
    return cert


def check_passphrase(passphrase: bytes) -> bytes:
    """A new keystore's passphrase: long enough that Argon2id has something to protect."""
    if len(passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE_CHARS:
        raise Malformed(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")
    return passphrase


def create(path: Path, officer: str, name: str, role: str, node_url: str, ca_cert_pem: bytes,
           passphrase: bytes, *, almanac: Almanac | None = None) -> tuple[Keystore, bytes]:
    """Generate the officer's keys, save the keystore, return it and the enrolment request
    (which carries ``almanac``: languages, posting, coverage; none by default).

    Refuses to overwrite an existing keystore: it may hold the only copy of keys that open
    envelopes already sent to the officer.
    """
    check_officer_id(officer)
    check_passphrase(passphrase)
    if path.exists():
        raise Conflict(f"a keystore already exists at {path}; choose another --keystore")
    signing = crypto.generate_signing_key()
    encryption = crypto.generate_encryption_key()
    request = EnrolmentRequest(officer=officer, name=name, role=role,
                               signing_public=signing.public,
                               encryption_public=encryption.public,
                               almanac=almanac or Almanac())
    request_bytes = sign_enrolment_request(request, signing)
    # Check the request as the node will (name, role, almanac) before anything touches the disk.
    verify_enrolment_request(request_bytes)
    check_ca_pem(ca_cert_pem)
    keystore = Keystore(officer, signing, (encryption,), check_node_url(node_url), ca_cert_pem,
                        request_bytes)
    save(path, keystore, passphrase)
    return keystore, request_bytes


def save(path: Path, keystore: Keystore, passphrase: bytes) -> None:
    """Seal and write the keystore (0600, atomic replace)."""
    blob = crypto.seal_with_passphrase(codec.pack(keystore.to_wire()), passphrase)
    certificates.write_secret(path, MAGIC + blob)


def load(path: Path, passphrase: bytes) -> Keystore:
    """Open the keystore; a wrong passphrase or any changed byte raises CannotOpen."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no keystore at {path}: run `liaison officer init` first, "
                          "or pass --keystore / set LIAISON_KEYSTORE") from None
    except OSError as exc:
        raise ConfigError(f"cannot read keystore {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_KEYSTORE_BYTES or not raw.startswith(MAGIC):
        raise CannotOpen(f"{path} is not a liaison_net keystore")
    plain = crypto.open_with_passphrase(raw[len(MAGIC):], passphrase)
    try:
        return _decode(plain)
    except Malformed as exc:
        # Authenticated, yet not a keystore we understand: written by another version.
        raise CannotOpen(f"keystore {path} has an unsupported layout: {exc.detail}") from None


def _decode(plain: bytes) -> Keystore:
    value = codec.unpack(plain, what="keystore", max_bytes=MAX_KEYSTORE_BYTES)
    version = value.get("version") if isinstance(value, dict) else None
    if version not in (1, VERSION) or isinstance(version, bool):
        raise Malformed(f"unsupported keystore version {version!r:.20}")
    d = codec.exact_map("keystore", value, _FIELDS if version == VERSION else _FIELDS_V1)
    request = d.get("request")
    if request is not None and not isinstance(request, bytes):
        raise Malformed("request must be bytes")
    secrets = d["encryption_secrets"]
    if not isinstance(secrets, list) or not 1 <= len(secrets) <= MAX_ENCRYPTION_KEYS:
        raise Malformed("encryption_secrets must list 1 to 32 keys")
    if not isinstance(d["node_url"], str) or not isinstance(d["ca_cert_pem"], bytes):
        raise Malformed("node_url must be text and ca_cert_pem bytes")
    return Keystore(
        officer=check_officer_id(d["officer"]),
        signing=crypto.signing_key_from_seed(d["signing_seed"]),
        encryption_keys=tuple(crypto.encryption_key_from_secret(s) for s in secrets),
        node_url=check_node_url(d["node_url"]),
        ca_cert_pem=d["ca_cert_pem"],
        request=request,
    )


def export_request(keystore: Keystore) -> bytes | None:
    """The enrolment request `officer init` made (name, role, almanac entry), with this
    keystore's current public keys and signed by its current signing key; None for a
    version-1 keystore, which did not keep it."""
    if keystore.request is None:
        return None
    try:
        kept = verify_enrolment_request(keystore.request)
    except Refused as exc:  # Malformed, BadSignature: not what `officer init` wrote
        raise CannotOpen(f"the enrolment request in the keystore is unreadable: "
                         f"{exc.detail}") from None
    if kept.officer != keystore.officer:
        raise CannotOpen(f"the keystore of {keystore.officer} holds a request for "
                         f"{kept.officer}")
    current = dataclasses.replace(kept, signing_public=keystore.signing.public,
                                  encryption_public=keystore.encryption.public)
    return sign_enrolment_request(current, keystore.signing)


def rotated(keystore: Keystore, *, serial: int, now: int,
            grace_ms: int) -> tuple[Keystore, bytes]:
    """New signing and encryption keys, and the statement (signed by the current signing
    key) that asks the home node for a card with them.

    The old encryption keys stay in the returned keystore, newest first: envelopes already
    sealed for them must stay readable. The oldest are dropped past MAX_ENCRYPTION_KEYS.
    """
    signing = crypto.generate_signing_key()
    encryption = crypto.generate_encryption_key()
    statement = rotation.sign_rotation(rotation.Rotation(
        rotation.Subject.OFFICER, keystore.officer, keystore.signing.key_id, signing.public,
        encryption.public, serial=serial, issued=now, grace_until=now + grace_ms),
        keystore.signing)
    keys = (encryption, *keystore.encryption_keys)[:MAX_ENCRYPTION_KEYS]
    return Keystore(keystore.officer, signing, keys, keystore.node_url,
                    keystore.ca_cert_pem, keystore.request), statement
