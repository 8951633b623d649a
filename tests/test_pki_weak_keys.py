"""A node signing key is checked where it enters, even when the CA certified it: a
certificate carrying a small-order or non-canonical Ed25519 key is `weak_key` (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from liaison_net import errors
from liaison_net.pki import certificates
from tests.core.test_pseudonym import NON_CANONICAL, SMALL_ORDER

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _certified(ca_dir: Path, public: bytes) -> bytes:
    """What a CA (careless, or in an attacker's hands) signs for node `nl`: any 32 bytes."""
    ca_cert, ca_key = certificates._load_ca(ca_dir)  # the CA's own recipes
    cert = certificates._issue_leaf(
        ca_cert, ca_key, "nl", ed25519.Ed25519PublicKey.from_public_bytes(public), [],
        [certificates.SIGNING_EKU], (NOW - timedelta(hours=1), NOW + timedelta(days=1)))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("public", [*SMALL_ORDER, *NON_CANONICAL],
                         ids=lambda pk: pk.hex()[:8] + ".." + pk.hex()[-4:])
def test_a_certified_weak_node_signing_key_is_refused_naming_it(tmp_path: Path,
                                                                 public: bytes) -> None:
    certificates.init_network(tmp_path, now=NOW)
    ca = certificates.load_ca_certificate(tmp_path / certificates.CA_CERT_FILE)
    with pytest.raises(errors.WeakKey, match="signing certificate key of node nl"):
        certificates.verify_node_signing_certificate(_certified(tmp_path, public), ca, now=NOW)


def test_a_certified_good_key_is_returned(tmp_path: Path) -> None:
    certificates.init_network(tmp_path, now=NOW)
    ca = certificates.load_ca_certificate(tmp_path / certificates.CA_CERT_FILE)
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert certificates.verify_node_signing_certificate(
        _certified(tmp_path, public), ca, now=NOW) == ("nl", public)
