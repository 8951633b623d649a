"""A node's own key changes on disk, beside its keys (core/key_change.py).

- ``pending.keychange``: the statement `liaison admin rotate-key node` or `revoke node`
  prepared, travelling between administrators to collect co-signatures (any copy of it
  may be co-signed; `liaison admin keys apply` takes the co-signed one);
- ``signing.key.next`` / ``signing.crt.next``: the CA-certified new key a rotation or
  replacement waits to install (0600 / 0644);
- ``key-changes/NNNNNN.keychange``: every change applied, by serial: the chain the node
  pushes to its peers with its certificate, and where its next serial comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from liaison_net import errors
from liaison_net.core import key_change
from liaison_net.pki import certificates
from liaison_net.pki.reissue import PREVIOUS_SIGNING_KEY_FILE, _validity

PENDING_FILE = "pending.keychange"
NEXT_KEY_FILE = "signing.key.next"
NEXT_CERT_FILE = "signing.crt.next"
CHAIN_DIR = "key-changes"
MAX_CHAIN_FILES = 10_000  # serials are 6 digits in file names; a node changes keys rarely


@dataclass(frozen=True)
class NextKey:
    seed: bytes
    cert_pem: bytes


def chain(cert_dir: Path, *, latest: int = key_change.MAX_CHAIN) -> list[tuple[int, bytes]]:
    """(serial, statement) of the node's applied changes, oldest first, the latest few."""
    directory = cert_dir / CHAIN_DIR
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".keychange"))
    except FileNotFoundError:
        return []
    out = []
    for name in names[-latest:]:
        try:
            serial = int(name.split(".")[0])
        except ValueError:
            continue
        out.append((serial, (directory / name).read_bytes()))
    return out


def last_serial(cert_dir: Path) -> int:
    found = chain(cert_dir, latest=1)
    return found[-1][0] if found else 0


def record(cert_dir: Path, serial: int, statement: bytes) -> Path:
    """Add an applied change to the chain (never overwriting one)."""
    if not 1 <= serial < 1_000_000:
        raise errors.Malformed("key change serial out of range for this node's chain")
    directory = cert_dir / CHAIN_DIR
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / f"{serial:06d}.keychange"
    if path.exists():
        raise errors.Conflict(f"key change {serial} is already applied ({path})")
    certificates.write_public(path, statement)
    return path


def prepare_next_key(node_dir: Path, node_id: str, *, ca_dir: Path, now: datetime) -> NextKey:
    """A new Ed25519 signing key certified by the CA, kept aside until the change that
    introduces it is co-signed and applied."""
    ca_cert, ca_key = certificates._load_ca(ca_dir)
    key = ed25519.Ed25519PrivateKey.generate()
    cert = certificates._issue_leaf(ca_cert, ca_key, node_id, key.public_key(), [],
                                    [certificates.SIGNING_EKU], _validity(ca_cert, now))
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    certificates.write_secret(node_dir / NEXT_KEY_FILE, seed)
    certificates.write_public(node_dir / NEXT_CERT_FILE, cert_pem)
    return NextKey(seed, cert_pem)


def next_key(node_dir: Path) -> NextKey | None:
    try:
        return NextKey((node_dir / NEXT_KEY_FILE).read_bytes(),
                       (node_dir / NEXT_CERT_FILE).read_bytes())
    except FileNotFoundError:
        return None


def install_next_key(node_dir: Path, node_id: str) -> None:
    """Make the waiting key the node's signing key (the old seed kept aside, if any); the
    running node switches within a second (``key_watch``)."""
    paths = certificates.NodePaths.under(node_dir, node_id)
    nxt = next_key(node_dir)
    if nxt is None:
        raise errors.NotFound(f"no new signing key waits in {node_dir}")
    if paths.signing_key.exists():
        certificates.write_secret(node_dir / PREVIOUS_SIGNING_KEY_FILE,
                                  paths.signing_key.read_bytes())
    certificates.write_secret(paths.signing_key, nxt.seed)
    certificates.write_public(paths.signing_cert, nxt.cert_pem)
    (node_dir / NEXT_KEY_FILE).unlink()
    (node_dir / NEXT_CERT_FILE).unlink()
