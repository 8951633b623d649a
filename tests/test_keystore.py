"""The officer keystore on real files, and the passphrase recipe under it."""

from __future__ import annotations

import ssl
import stat
import struct
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net import errors
from liaison_net.client import keystore
from liaison_net.client.session import error_from_answer, officer_ssl_context
from liaison_net.core import crypto
from liaison_net.core.identity import verify_enrolment_request
from liaison_net.pki import certificates

PASSPHRASE = b"correct horse battery staple"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    certs = tmp_path_factory.mktemp("certs")
    return certificates.init_network(certs, now=NOW).ca_cert.read_bytes()


@pytest.fixture
def created(tmp_path: Path, ca_pem: bytes) -> tuple[Path, keystore.Keystore, bytes]:
    path = tmp_path / "officer.keystore"
    ks, request = keystore.create(path, "nl/jdevries", "Jan de Vries", "liaison officer",
                                  "https://127.0.0.1:7501", ca_pem, PASSPHRASE)
    return path, ks, request


# --- the passphrase recipe ------------------------------------------------------------------


def test_passphrase_seal_round_trips_and_salts_every_time() -> None:
    a = crypto.seal_with_passphrase(b"secret", b"pass phrase")
    b = crypto.seal_with_passphrase(b"secret", b"pass phrase")
    assert a != b  # fresh salt and nonce
    assert crypto.open_with_passphrase(a, b"pass phrase") == b"secret"
    assert crypto.open_with_passphrase(b, b"pass phrase") == b"secret"


def test_passphrase_blob_refuses_wrong_passphrase_with_one_opaque_error() -> None:
    blob = crypto.seal_with_passphrase(b"secret", b"pass phrase")
    with pytest.raises(errors.CannotOpen) as refused:
        crypto.open_with_passphrase(blob, b"pass phrasE")
    assert refused.value.detail == "wrong passphrase or damaged keystore"


@pytest.mark.parametrize("index", [0, 1, 17, 21, 25, 30, 60, -1])
def test_passphrase_blob_refuses_any_changed_byte(index: int) -> None:
    """Version, salt, KDF limits, nonce, ciphertext, MAC: each byte is load-bearing."""
    blob = bytearray(crypto.seal_with_passphrase(b"secret data " * 4, b"pass phrase"))
    blob[index] ^= 0x01
    with pytest.raises(errors.CannotOpen):
        crypto.open_with_passphrase(bytes(blob), b"pass phrase")


def test_passphrase_blob_refuses_kdf_limits_that_would_exhaust_memory() -> None:
    """A crafted file cannot make the client allocate gigabytes before the MAC check."""
    blob = crypto.seal_with_passphrase(b"secret", b"pass phrase")
    crafted = blob[:17] + struct.pack(">II", 2, 0xFFFFFFFF) + blob[25:]
    with pytest.raises(errors.CannotOpen):
        crypto.open_with_passphrase(crafted, b"pass phrase")


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" * 40])
def test_passphrase_blob_refuses_truncated_input(blob: bytes) -> None:
    with pytest.raises(errors.CannotOpen):
        crypto.open_with_passphrase(blob, b"pass phrase")


def test_passphrase_seal_refuses_an_empty_passphrase() -> None:
    with pytest.raises(errors.Malformed):
        crypto.seal_with_passphrase(b"secret", b"")


# --- the keystore file ----------------------------------------------------------------------


def test_keystore_round_trips_keys_url_and_ca(created: tuple[Path, keystore.Keystore, bytes],
                                              ca_pem: bytes) -> None:
    path, ks, _ = created
    loaded = keystore.load(path, PASSPHRASE)
    assert loaded == ks
    assert loaded.officer == "nl/jdevries" and loaded.node == "nl"
    assert loaded.node_url == "https://127.0.0.1:7501"
    assert loaded.ca_cert_pem == ca_pem


def test_enrolment_request_carries_the_keystore_public_keys(
        created: tuple[Path, keystore.Keystore, bytes]) -> None:
    _, ks, raw = created
    request = verify_enrolment_request(raw)
    assert request.officer == "nl/jdevries"
    assert request.name == "Jan de Vries" and request.role == "liaison officer"
    assert request.signing_public == ks.signing.public
    assert request.encryption_public == ks.encryption.public


def test_keystore_file_is_0600_and_leaves_no_temporary_file(
        created: tuple[Path, keystore.Keystore, bytes]) -> None:
    path, _, _ = created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_keystore_holds_no_key_in_the_clear(created: tuple[Path, keystore.Keystore, bytes]
                                            ) -> None:
    path, ks, _ = created
    raw = path.read_bytes()
    for secret in (ks.signing.seed, ks.encryption.secret, ks.signing.public):
        assert secret not in raw
    assert b"nl/jdevries" not in raw


def test_keystore_refuses_a_wrong_passphrase(created: tuple[Path, keystore.Keystore, bytes]
                                             ) -> None:
    path, _, _ = created
    with pytest.raises(errors.CannotOpen, match="wrong passphrase or damaged keystore"):
        keystore.load(path, b"correct horse battery stapler")


@pytest.mark.parametrize("where", ["magic", "header", "middle", "end"])
def test_keystore_refuses_a_tampered_file(created: tuple[Path, keystore.Keystore, bytes],
                                          where: str) -> None:
    path, _, _ = created
    raw = bytearray(path.read_bytes())
    index = {"magic": 0, "header": len(keystore.MAGIC) + 3, "middle": len(raw) // 2,
             "end": len(raw) - 1}[where]
    raw[index] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(errors.CannotOpen):
        keystore.load(path, PASSPHRASE)


def test_keystore_refuses_a_truncated_file(created: tuple[Path, keystore.Keystore, bytes]
                                           ) -> None:
    path, _, _ = created
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(errors.CannotOpen):
        keystore.load(path, PASSPHRASE)


def test_missing_keystore_is_a_config_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="liaison officer init"):
        keystore.load(tmp_path / "nope.keystore", PASSPHRASE)


def test_create_never_overwrites_a_keystore(created: tuple[Path, keystore.Keystore, bytes],
                                            ca_pem: bytes) -> None:
    path, ks, _ = created
    with pytest.raises(errors.Conflict):
        keystore.create(path, "nl/other", "Other", "officer", "https://127.0.0.1:7501",
                        ca_pem, PASSPHRASE)
    assert keystore.load(path, PASSPHRASE) == ks


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"passphrase": b"short"}, errors.Malformed),
    ({"officer": "jdevries"}, errors.Malformed),
    ({"name": "Jan\x1b[2J"}, errors.Malformed),
    ({"node_url": "http://127.0.0.1:7501"}, errors.ConfigError),
    ({"node_url": "https://127.0.0.1"}, errors.ConfigError),
    ({"node_url": "https://127.0.0.1:7501/api"}, errors.ConfigError),
    ({"ca_cert_pem": b"not a certificate"}, errors.ConfigError),
])
def test_create_refuses_bad_input_and_writes_nothing(
        tmp_path: Path, ca_pem: bytes, kwargs: dict[str, object],
        error: type[errors.LiaisonError]) -> None:
    args: dict[str, object] = dict(path=tmp_path / "k", officer="nl/jdevries", name="Jan",
                                   role="officer", node_url="https://127.0.0.1:7501",
                                   ca_cert_pem=ca_pem, passphrase=PASSPHRASE)
    args.update(kwargs)
    with pytest.raises(error):
        keystore.create(**args)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_rotated_encryption_keys_keep_their_order(
        created: tuple[Path, keystore.Keystore, bytes]) -> None:
    """Newest first; old keys stay so envelopes sealed for them still open."""
    path, ks, _ = created
    rotated = replace(ks, encryption_keys=(crypto.generate_encryption_key(),
                                           *ks.encryption_keys))
    keystore.save(path, rotated, PASSPHRASE)
    loaded = keystore.load(path, PASSPHRASE)
    assert loaded.encryption_keys == rotated.encryption_keys
    assert loaded.encryption_keys[1] == ks.encryption
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keystore_repr_shows_key_ids_never_secrets(
        created: tuple[Path, keystore.Keystore, bytes]) -> None:
    _, ks, _ = created
    text = repr(ks) + str(ks)
    assert ks.signing.key_id.hex() in text
    for secret in (ks.signing.seed, ks.encryption.secret):
        assert secret.hex() not in text and repr(secret) not in text


# --- the client's TLS context and error mapping --------------------------------------------


def test_officer_tls_context_trusts_only_the_network_ca(ca_pem: bytes) -> None:
    ctx = officer_ssl_context(ca_pem)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1  # no system trust store


@pytest.mark.parametrize(("status", "body", "cls", "code"), [
    (404, b'{"error": "not_found", "detail": "no such envelope"}', errors.NotFound,
     "not_found"),
    (403, b'{"error": "policy.share_with", "detail": "x"}', errors.PolicyRefused,
     "policy.share_with"),
    (401, b'{"error": "unauthorized", "detail": "x"}', errors.Unauthorized, "unauthorized"),
    (418, b'{"error": "teapot", "detail": "x"}', errors.Refused, "teapot"),
    (400, b"<html>oops</html>", errors.Refused, "refused"),
    (500, b'{"error": "node_fault", "detail": "internal error"}', errors.NodeFault,
     "node_fault"),
    (503, b"", errors.Unavailable, "unavailable"),
    (502, b'{"error": "Bad Code!", "detail": "x"}', errors.NodeFault, "node_fault"),
])
def test_error_answers_become_the_class_with_their_code(
        status: int, body: bytes, cls: type[errors.LiaisonError], code: str) -> None:
    error = error_from_answer(status, body)
    assert type(error) is cls
    assert error.code == code


def test_error_details_from_the_node_lose_their_control_characters() -> None:
    error = error_from_answer(400, b'{"error": "malformed", "detail": "bad\\u001b[31m red"}')
    assert "\x1b" not in error.detail and "red" in error.detail
