"""The network PKI: one offline CA, and per node a TLS certificate and a signing certificate.

Why two certificates per node: the TLS key (ECDSA P-256) authenticates the *connection*
(mutual TLS 1.3 between nodes), the Ed25519 key signs *envelopes and statements*, which
outlive any connection and are checked by nodes that never spoke to the signer. Both carry
the node id twice: the SAN URI ``liaison://node/<id>`` is authoritative, the subject CN must
agree (a cross-check that catches a certificate built by hand).

This module is an adapter: it reads and writes files and turns every ``cryptography`` and
``OSError`` failure into our error tree. Time is always an argument (``now``), never read
here. Secrets are created 0600 from the first byte (``os.open`` with the mode, then an
atomic rename), so no other user can ever open them; key material is never logged.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from liaison_net import errors
from liaison_net.core import crypto

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
SIGNING_KEY_FILE = "signing.key"
SIGNING_CERT_FILE = "signing.crt"

NODE_URI_PREFIX = "liaison://node/"
# Our own EKU for signing certificates, an OID under the UUID arc 2.25 (X.667): no
# registration needed, and since it is the only EKU, the certificate is useless for TLS.
SIGNING_EKU = x509.ObjectIdentifier("2.25.91014810288345567175576861659521347311")

CA_VALIDITY = timedelta(days=3650)
NODE_VALIDITY = timedelta(days=365)
# Certificates start a little in the past so a peer whose clock lags does not refuse them.
BACKDATE = timedelta(minutes=5)

_NODE_ID = re.compile(r"[a-z][a-z0-9-]{0,15}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


@dataclass(frozen=True)
class CaPaths:
    """Where ``init_network`` put the CA; ``ca_key`` goes offline once nodes are enrolled."""

    dir: Path
    ca_key: Path
    ca_cert: Path

    def as_dict(self) -> dict[str, str]:
        return {name: str(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class NodePaths:
    """A node's self-contained directory: everything its config needs, no CA private key."""

    node_id: str
    dir: Path
    tls_key: Path
    tls_cert: Path
    signing_key: Path
    signing_cert: Path
    ca_cert: Path

    @classmethod
    def under(cls, node_dir: Path, node_id: str) -> NodePaths:
        files = (TLS_KEY_FILE, TLS_CERT_FILE, SIGNING_KEY_FILE, SIGNING_CERT_FILE, CA_CERT_FILE)
        return cls(node_id, node_dir, *(node_dir / name for name in files))

    def as_dict(self) -> dict[str, str]:
        return {name: str(value) for name, value in asdict(self).items()}


# --- files ----------------------------------------------------------------------------------


def write_secret(path: Path, data: bytes) -> None:
    """Write a private key: 0600 from creation, atomically replacing any older file."""
    _write_atomic(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate or other public file (0644), atomically."""
    _write_atomic(path, data, 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # The temporary file is created with its final mode, so a secret is never readable by
    # others, not even between creation and a later chmod; os.replace makes the switch atomic.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits we want (never added any)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise errors.Unavailable(f"cannot write {path}: {exc.strerror or exc}") from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _mkdir_private(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.Unavailable(f"cannot create {directory}: {exc.strerror or exc}") from None


# --- issuing --------------------------------------------------------------------------------


def init_network(
    certs_dir: Path, *, name: str = "liaison_net network CA", now: datetime
) -> CaPaths:
    """Create the network CA (P-256 key and self-signed certificate); never overwrite one."""
    _require_aware(now)
    if not 1 <= len(name) <= 64:  # the X.520 upper bound on a common name
        raise errors.Malformed(f"CA name must be 1-64 characters, not {len(name)}")
    paths = CaPaths(certs_dir, certs_dir / CA_KEY_FILE, certs_dir / CA_CERT_FILE)
    for existing in (paths.ca_key, paths.ca_cert):
        if existing.exists():
            raise errors.Conflict(f"a network CA already exists: {existing}")
    _mkdir_private(certs_dir)

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_secret(paths.ca_key, _pem_private(key))
    write_public(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    # The network pseudonym key (see pseudonym_keys) is born with the network.
    from liaison_net.pki import pseudonym_key_files

    pseudonym_key_files.create(certs_dir)
    return paths


def node_hostname(node_id: str) -> str:
    """The DNS name bound in every node's TLS certificate (``.internal``: never public)."""
    return f"{check_node_id(node_id)}.liaison.internal"


def init_node(
    certs_dir: Path,
    node_id: str,
    *,
    ca_dir: Path,
    now: datetime,
    hostnames: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
) -> NodePaths:
    """Enrol a node: a TLS and an Ed25519 signing certificate, both issued by the CA."""
    _require_aware(now)
    check_node_id(node_id)
    # The node's own name is always in the certificate, so a connecting peer or officer can
    # ask for exactly that node (TLS server_hostname) and the handshake itself checks it.
    sans = _host_sans([node_hostname(node_id), *hostnames], ip_addresses)
    ca_cert, ca_key = _load_ca(ca_dir)
    if not ca_cert.not_valid_before_utc <= now <= ca_cert.not_valid_after_utc:
        raise errors.ConfigError(f"the network CA in {ca_dir} is not valid at {now.isoformat()}")
    paths = NodePaths.under(certs_dir / node_id, node_id)
    if paths.dir.exists() and any(paths.dir.iterdir()):
        raise errors.Conflict(f"{paths.dir} is not empty: node {node_id!r} is already enrolled")
    _mkdir_private(paths.dir)

    # A node certificate never outlives the CA that vouches for it.
    validity = (now - BACKDATE, min(now + NODE_VALIDITY, ca_cert.not_valid_after_utc))
    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    tls_cert = _issue_leaf(ca_cert, ca_key, node_id, tls_key.public_key(), sans, tls_eku, validity)
    signing_key = ed25519.Ed25519PrivateKey.generate()
    signing_cert = _issue_leaf(
        ca_cert, ca_key, node_id, signing_key.public_key(), [], [SIGNING_EKU], validity
    )
    # The raw 32-byte seed is exactly what nacl.signing.SigningKey(seed) takes.
    seed = signing_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )

    pem = serialization.Encoding.PEM
    write_secret(paths.tls_key, _pem_private(tls_key))
    write_public(paths.tls_cert, tls_cert.public_bytes(pem))
    write_secret(paths.signing_key, seed)
    write_public(paths.signing_cert, signing_cert.public_bytes(pem))
    write_public(paths.ca_cert, ca_cert.public_bytes(pem))
    from liaison_net.pki import pseudonym_key_files

    if (ca_dir / pseudonym_key_files.CURRENT).exists():
        pseudonym_key_files.install(ca_dir, paths.dir)
    return paths


def _issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    node_id: str,
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
    extra_sans: list[x509.GeneralName],
    eku: list[x509.ObjectIdentifier],
    validity: tuple[datetime, datetime],
) -> x509.Certificate:
    """A node certificate: the id as CN and as the SAN URI, digitalSignature only."""
    uri = x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectAlternativeName([uri, *extra_sans]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _host_sans(hostnames: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for host in hostnames:
        if not _DNS_NAME.fullmatch(host):
            raise errors.Malformed(f"host name {host!r} is not a valid DNS name")
        sans.append(x509.DNSName(host.lower()))
    for ip in ip_addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise errors.Malformed(f"{ip!r} is not an IP address") from None
    return sans


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = load_ca_certificate(ca_dir / CA_CERT_FILE)
    data = _read(ca_dir / CA_KEY_FILE, "CA private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise errors.ConfigError(f"{ca_dir / CA_KEY_FILE} is not an unencrypted PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.ConfigError(f"{ca_dir / CA_KEY_FILE} is not an ECDSA key")
    if key.public_key() != cert.public_key():
        raise errors.ConfigError(f"{CA_KEY_FILE} and {CA_CERT_FILE} in {ca_dir} do not match")
    return cert, key


# --- reading and verifying ------------------------------------------------------------------


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` if it is a well-formed node id (``be``, ``nl``, ``de-nw``)."""
    # fullmatch, not match with ^$: "$" would accept a trailing newline.
    if not _NODE_ID.fullmatch(node_id):
        raise errors.Malformed(
            f"node id {node_id!r} must be 1-16 of a-z, 0-9, '-', starting with a letter"
        )
    return node_id


def load_ca_certificate(path: Path) -> x509.Certificate:
    """Load the network CA certificate, the one trust anchor of every node."""
    try:
        cert = x509.load_pem_x509_certificate(_read(path, "CA certificate"))
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise errors.ConfigError(f"{path} has no basicConstraints: not a CA") from None
    except ValueError:
        raise errors.ConfigError(f"{path} is not a PEM X.509 certificate") from None
    if not constraints.ca:
        raise errors.ConfigError(f"{path} is not a CA certificate")
    return cert


def node_id_from_certificate(cert: x509.Certificate) -> str:
    """The node id a certificate is bound to: its one SAN URI, which the CN must repeat."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except x509.ExtensionNotFound:
        raise errors.Unauthorized("certificate has no subjectAltName: no node id") from None
    except ValueError:
        raise errors.Malformed("certificate extensions or subject cannot be parsed") from None
    uris = [
        uri
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(NODE_URI_PREFIX)
    ]
    if len(uris) != 1:
        raise errors.Unauthorized(
            f"certificate must carry exactly one {NODE_URI_PREFIX}<id> URI, has {len(uris)}"
        )
    node_id = uris[0].removeprefix(NODE_URI_PREFIX)
    if not _NODE_ID.fullmatch(node_id):
        raise errors.Unauthorized(f"certificate names an invalid node id {node_id!r}")
    if [attr.value for attr in common_names] != [node_id]:
        raise errors.Unauthorized(f"certificate CN does not match its node URI ({node_id!r})")
    return node_id


def verify_node_signing_certificate(
    cert_pem: bytes, ca_cert: x509.Certificate, *, now: datetime
) -> tuple[str, bytes]:
    """Check an untrusted signing certificate; return (node id, raw Ed25519 public key).

    The signature is checked before any field is believed (verify, then decode).
    """
    _require_aware(now)
    try:
        untrusted = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise errors.Malformed("signing certificate is not a PEM X.509 certificate") from None
    try:
        untrusted.verify_directly_issued_by(ca_cert)
    except ValueError:
        raise errors.Unauthorized("signing certificate was not issued by the network CA") from None
    except InvalidSignature:
        raise errors.Unauthorized(
            "signing certificate's signature does not verify against the network CA"
        ) from None
    except TypeError:
        raise errors.Unauthorized("signing certificate uses an unsupported algorithm") from None
    cert = untrusted

    if now < cert.not_valid_before_utc:
        raise errors.Unauthorized("signing certificate is not yet valid")
    if now > cert.not_valid_after_utc:
        raise errors.Unauthorized("signing certificate has expired")
    try:
        public_key = cert.public_key()
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise errors.Unauthorized(
            f"signing certificate lacks extension {exc.oid.dotted_string}"
        ) from None
    except ValueError:
        raise errors.Malformed("signing certificate key or extensions cannot be parsed") from None
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise errors.Unauthorized("signing certificate does not hold an Ed25519 key")
    if constraints.ca:
        raise errors.Unauthorized("signing certificate is a CA certificate")
    if not usage.digital_signature or SIGNING_EKU not in eku:
        raise errors.Unauthorized("certificate is not issued for node signing")
    node_id = node_id_from_certificate(cert)
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # The CA certifies bytes, not their quality: a weak key is refused even when certified.
    return node_id, crypto.check_signing_public(raw, f"signing certificate key of node {node_id}")


def _require_aware(now: datetime) -> None:
    # A naive datetime would be compared as if it were UTC by nobody's decision: a caller bug.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
