"""The network PKI on real files: modes, bindings, verification and its refusals, the CLI."""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nacl.signing import SigningKey

from liaison_net import errors
from liaison_net.cli.main import cli, main
from liaison_net.pki import certificates

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    directory = tmp_path / "certs"
    certificates.init_network(directory, now=NOW)
    return directory


@pytest.fixture
def node(certs: Path) -> certificates.NodePaths:
    return certificates.init_node(certs, "be", ca_dir=certs, now=NOW)


# --- files and modes ------------------------------------------------------------------------


def test_secrets_are_0600_and_certificates_public(certs: Path,
                                                  node: certificates.NodePaths) -> None:
    assert _mode(certs / "ca.key") == 0o600
    assert _mode(node.tls_key) == 0o600
    assert _mode(node.signing_key) == 0o600
    for public in (certs / "ca.crt", node.tls_cert, node.signing_cert, node.ca_cert):
        assert _mode(public) == 0o644
    assert _mode(node.dir) == 0o700


def test_node_directory_is_self_contained_without_the_ca_key(
    certs: Path, node: certificates.NodePaths
) -> None:
    names = sorted(p.name for p in node.dir.iterdir())
    assert names == ["ca.crt", "pseudonym.key", "signing.crt", "signing.key", "tls.crt",
                     "tls.key"]
    assert oct((node.dir / "pseudonym.key").stat().st_mode & 0o777) == "0o600"
    assert node.ca_cert.read_bytes() == (certs / "ca.crt").read_bytes()
    ca_key = (certs / "ca.key").read_bytes()
    assert all(ca_key not in p.read_bytes() for p in node.dir.iterdir())


def test_write_secret_is_0600_whatever_the_umask_and_replaces_a_public_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "k"
    target.write_bytes(b"old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        certificates.write_secret(target, b"new")
    finally:
        os.umask(old_umask)
    assert _mode(target) == 0o600
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary file left behind


def test_ca_certificate_is_a_ten_year_ca(certs: Path) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.not_valid_after_utc - NOW >= timedelta(days=3650)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


# --- identity bound in the certificates -----------------------------------------------------


def test_node_id_is_read_back_from_both_certificates(node: certificates.NodePaths) -> None:
    tls_cert = _cert(node.tls_cert)
    assert certificates.node_id_from_certificate(tls_cert) == "be"
    assert certificates.node_id_from_certificate(_cert(node.signing_cert)) == "be"
    san = tls_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["be.liaison.internal", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert tls_cert.not_valid_after_utc - NOW <= timedelta(days=365)


def test_signing_seed_is_the_key_the_certificate_certifies(
    certs: Path, node: certificates.NodePaths
) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    node_id, public = certificates.verify_node_signing_certificate(
        node.signing_cert.read_bytes(), ca, now=NOW
    )
    seed = node.signing_key.read_bytes()
    assert node_id == "be"
    assert len(seed) == 32
    assert SigningKey(seed).verify_key.encode() == public


@pytest.mark.parametrize("node_id", ["BE", "1x", "", "a" * 17, "be\n", "b_e", "-x", "nl/x"])
def test_malformed_node_ids_are_refused(certs: Path, node_id: str) -> None:
    with pytest.raises(errors.Malformed, match="node id"):
        certificates.init_node(certs, node_id, ca_dir=certs, now=NOW)


@pytest.mark.parametrize("node_id", ["be", "de-nw", "a" * 16])
def test_well_formed_node_ids_are_accepted(certs: Path, node_id: str) -> None:
    paths = certificates.init_node(certs, node_id, ca_dir=certs, now=NOW)
    assert certificates.node_id_from_certificate(_cert(paths.tls_cert)) == node_id


def _issue_by_hand(certs: Path, cn: str, sans: list[x509.GeneralName] | None) -> x509.Certificate:
    """A certificate the CA signed but with identity fields init_node would never write."""
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def test_cn_that_contradicts_the_uri_is_unauthorized(certs: Path) -> None:
    cert = _issue_by_hand(certs, "nl", [x509.UniformResourceIdentifier("liaison://node/be")])
    with pytest.raises(errors.Unauthorized, match="CN does not match"):
        certificates.node_id_from_certificate(cert)


def test_certificate_without_node_uri_is_unauthorized(certs: Path) -> None:
    with pytest.raises(errors.Unauthorized, match="subjectAltName"):
        certificates.node_id_from_certificate(_issue_by_hand(certs, "be", None))
    with pytest.raises(errors.Unauthorized, match="exactly one"):
        certificates.node_id_from_certificate(_issue_by_hand(certs, "be", [x509.DNSName("be")]))


# --- verifying signing certificates ---------------------------------------------------------


def test_signing_certificate_from_another_ca_is_unauthorized(
    tmp_path: Path, node: certificates.NodePaths
) -> None:
    other = tmp_path / "other"
    certificates.init_network(other, now=NOW)
    other_ca = certificates.load_ca_certificate(other / "ca.crt")
    with pytest.raises(errors.Unauthorized, match="network CA"):
        certificates.verify_node_signing_certificate(node.signing_cert.read_bytes(), other_ca,
                                                     now=NOW)


def test_signing_certificate_from_another_ca_with_the_same_name_is_unauthorized(
    tmp_path: Path, node: certificates.NodePaths
) -> None:
    """Same issuer name, different key: only the signature check can tell."""
    other = tmp_path / "other"
    certificates.init_network(other, now=NOW)  # same default CA name as ours
    other_ca = certificates.load_ca_certificate(other / "ca.crt")
    with pytest.raises(errors.Unauthorized, match="signature does not verify"):
        certificates.verify_node_signing_certificate(node.signing_cert.read_bytes(), other_ca,
                                                     now=NOW)


@pytest.mark.parametrize(
    ("when", "reason"),
    [(NOW + timedelta(days=366), "expired"), (NOW - timedelta(days=1), "not yet valid")],
)
def test_signing_certificate_outside_its_validity_is_unauthorized(
    certs: Path, node: certificates.NodePaths, when: datetime, reason: str
) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    with pytest.raises(errors.Unauthorized, match=reason):
        certificates.verify_node_signing_certificate(node.signing_cert.read_bytes(), ca, now=when)


def test_tampered_signing_certificate_is_unauthorized(certs: Path,
                                                      node: certificates.NodePaths) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    der = _cert(node.signing_cert).public_bytes(serialization.Encoding.DER)
    assert der.count(b"liaison://node/be") == 1
    forged = x509.load_der_x509_certificate(
        der.replace(b"liaison://node/be", b"liaison://node/nl")
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(errors.Unauthorized, match="signature does not verify"):
        certificates.verify_node_signing_certificate(forged, ca, now=NOW)


def test_tls_certificate_is_not_accepted_as_a_signing_certificate(
    certs: Path, node: certificates.NodePaths
) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    with pytest.raises(errors.Unauthorized, match="Ed25519"):
        certificates.verify_node_signing_certificate(node.tls_cert.read_bytes(), ca, now=NOW)


@pytest.mark.parametrize("garbage", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\n"])
def test_garbage_is_malformed(certs: Path, garbage: bytes) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    with pytest.raises(errors.Malformed):
        certificates.verify_node_signing_certificate(garbage, ca, now=NOW)


def test_naive_now_is_a_programming_error(certs: Path, node: certificates.NodePaths) -> None:
    ca = certificates.load_ca_certificate(certs / "ca.crt")
    with pytest.raises(ValueError, match="timezone-aware"):
        certificates.verify_node_signing_certificate(
            node.signing_cert.read_bytes(), ca, now=NOW.replace(tzinfo=None)
        )


# --- refusals when issuing ------------------------------------------------------------------


def test_init_network_twice_is_refused_and_keeps_the_first_ca(certs: Path) -> None:
    before = (certs / "ca.key").read_bytes()
    with pytest.raises(errors.Conflict, match="already exists"):
        certificates.init_network(certs, now=NOW)
    assert (certs / "ca.key").read_bytes() == before


def test_init_node_twice_is_refused(certs: Path, node: certificates.NodePaths) -> None:
    before = node.tls_key.read_bytes()
    with pytest.raises(errors.Conflict, match="already enrolled"):
        certificates.init_node(certs, "be", ca_dir=certs, now=NOW)
    assert node.tls_key.read_bytes() == before


@pytest.mark.parametrize("name", ["", "x" * 65])
def test_ca_name_outside_the_common_name_bounds_is_malformed(tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.Malformed, match="CA name"):
        certificates.init_network(tmp_path, name=name, now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_init_node_without_a_ca_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"ca\.crt"):
        certificates.init_node(tmp_path, "be", ca_dir=tmp_path / "nowhere", now=NOW)


def test_init_node_with_an_expired_ca_is_a_config_error(certs: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not valid"):
        certificates.init_node(certs, "be", ca_dir=certs, now=NOW + timedelta(days=3651))


@pytest.mark.parametrize(
    ("hosts", "ips"), [(["bad host"], []), (["-x.example"], []), ([], ["300.1.1.1"])]
)
def test_bad_host_names_and_addresses_are_malformed(
    certs: Path, hosts: list[str], ips: list[str]
) -> None:
    with pytest.raises(errors.Malformed):
        certificates.init_node(certs, "be", ca_dir=certs, now=NOW, hostnames=hosts,
                               ip_addresses=ips)
    assert not (certs / "be").exists()


# --- CLI ------------------------------------------------------------------------------------


def test_cli_init_network_and_init_node_json(tmp_path: Path) -> None:
    runner = CliRunner()
    certs = tmp_path / "certs"
    result = runner.invoke(cli, ["admin", "init-network", "--dir", str(certs), "--json"])
    assert result.exit_code == 0, result.output
    ca = json.loads(result.output)
    assert Path(ca["ca_key"]) == certs / "ca.key"
    assert _mode(Path(ca["ca_key"])) == 0o600

    result = runner.invoke(
        cli,
        [
            *("admin", "init-node", "lu", "--dir", str(certs), "--ca-dir", str(certs)),
            *("--host", "lu.example", "--host", "10.1.2.3", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    paths = json.loads(result.output)
    assert paths["node_id"] == "lu"
    assert set(paths) >= {"tls_key", "tls_cert", "signing_key", "signing_cert", "ca_cert"}
    tls_cert = _cert(Path(paths["tls_cert"]))
    san = tls_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["lu.liaison.internal", "lu.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]


def test_cli_human_output_lists_files_and_no_key_material(tmp_path: Path) -> None:
    runner = CliRunner()
    certs = tmp_path / "certs"
    first = runner.invoke(cli, ["admin", "init-network", "--dir", str(certs)])
    second = runner.invoke(
        cli, ["admin", "init-node", "nl", "--dir", str(certs), "--ca-dir", str(certs)]
    )
    assert first.exit_code == 0 and second.exit_code == 0
    assert "ca.key  (secret, 0600)" in first.output
    assert "move ca.key offline" in first.output
    for name in ("tls.key", "tls.crt", "signing.key", "signing.crt", "ca.crt"):
        assert name in second.output
    assert "PRIVATE KEY" not in first.output + second.output


def test_cli_init_network_twice_prints_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = str(tmp_path / "certs")
    monkeypatch.setattr(sys, "argv", ["liaison", "admin", "init-network", "--dir", certs])
    main()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: conflict: a network CA already exists")
