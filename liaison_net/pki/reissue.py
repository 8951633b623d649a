"""Re-issue a node's TLS certificate or signing key from the CA, in place, atomically.

A running node watches its certificate directory and picks the new files up by itself
(``node.KeyWatcher``): no restart, no failed transaction. The previous signing key is kept
next to the new one (``signing.key.previous``, 0600) so the node can announce the rotation
signed by the old key, and peers accept both during the grace period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from liaison_net import errors
from liaison_net.pki import certificates

PREVIOUS_SIGNING_KEY_FILE = "signing.key.previous"


@dataclass(frozen=True)
class SigningRotation:
    old_seed: bytes
    new_seed: bytes
    new_cert_pem: bytes


def _validity(ca_cert: x509.Certificate, now: datetime) -> tuple[datetime, datetime]:
    if not ca_cert.not_valid_before_utc <= now <= ca_cert.not_valid_after_utc:
        raise errors.ConfigError(f"the network CA is not valid at {now.isoformat()}")
    return now - certificates.BACKDATE, min(now + certificates.NODE_VALIDITY,
                                            ca_cert.not_valid_after_utc)


def _current_sans(tls_cert_path: Path) -> list[x509.GeneralName]:
    cert = x509.load_pem_x509_certificate(tls_cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [name for name in san if not isinstance(name, x509.UniformResourceIdentifier)]


def rotate_tls(node_dir: Path, node_id: str, *, ca_dir: Path, now: datetime) -> x509.Certificate:
    """A new TLS key and certificate with the same names; written key first, then cert."""
    paths = certificates.NodePaths.under(node_dir, node_id)
    ca_cert, ca_key = certificates._load_ca(ca_dir)
    sans = _current_sans(paths.tls_cert)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificates._issue_leaf(ca_cert, ca_key, node_id, key.public_key(), sans,
                           [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                           _validity(ca_cert, now))
    # One file holding both would be atomic; two files are swapped key-then-cert, and the
    # node's watcher only reloads once the pair matches (load_cert_chain checks it).
    certificates.write_secret(paths.tls_key, certificates._pem_private(key))
    certificates.write_public(paths.tls_cert, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def rotate_signing(node_dir: Path, node_id: str, *, ca_dir: Path,
                   now: datetime) -> SigningRotation:
    """A new Ed25519 node signing key certified by the CA; the old seed is kept aside."""
    paths = certificates.NodePaths.under(node_dir, node_id)
    ca_cert, ca_key = certificates._load_ca(ca_dir)
    old_seed = paths.signing_key.read_bytes()
    key = ed25519.Ed25519PrivateKey.generate()
    cert = certificates._issue_leaf(ca_cert, ca_key, node_id, key.public_key(), [],
                                    [certificates.SIGNING_EKU],
                           _validity(ca_cert, now))
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    certificates.write_secret(node_dir / PREVIOUS_SIGNING_KEY_FILE, old_seed)
    certificates.write_secret(paths.signing_key, seed)
    certificates.write_public(paths.signing_cert, cert_pem)
    return SigningRotation(old_seed, seed, cert_pem)
