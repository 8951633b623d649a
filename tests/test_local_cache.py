"""The CLI's caches beside the keystore (client.local_cache), on real files: sealed, bound
to the keystore's key, officer and node, trusted only while fresh and only when the file
is the user's own and private. Each refusal is a warning, never an exception."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net.client import keystore
from liaison_net.client import local_cache as lc
from liaison_net.core import crypto
from liaison_net.pki import certificates

PASSPHRASE = b"correct horse battery staple"
NOW = 1_800_000_000_000
TLS = "ab" * 32


@pytest.fixture(scope="module")
def ks(tmp_path_factory: pytest.TempPathFactory) -> keystore.Keystore:
    root = tmp_path_factory.mktemp("cache-ks")
    ca = certificates.init_network(root / "certs",
                                   now=datetime(2026, 3, 1, tzinfo=UTC)).ca_cert.read_bytes()
    made, _ = keystore.create(root / "officer.keystore", "nl/jdevries", "Jan de Vries",
                              "liaison officer", "https://127.0.0.1:7501", ca, PASSPHRASE)
    return made


class Cache:
    """A LocalCache on a clock the test moves, collecting its warnings."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = NOW
        self.warnings: list[str] = []
        self.cache = lc.LocalCache(tmp_path / "officer.keystore", now_ms=lambda: self.now,
                                   warn=self.warnings.append)


@pytest.fixture
def c(tmp_path: Path) -> Cache:
    return Cache(tmp_path)


def test_a_token_round_trips_sealed_and_0600(c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "tok-" + "x" * 40, node_expires=NOW + 900_000, tls_identity=TLS)
    raw = c.cache.token_path.read_bytes()
    assert b"tok-" not in raw and TLS.encode() not in raw
    assert os.stat(c.cache.token_path).st_mode & 0o777 == 0o600
    got = c.cache.load_token(ks)
    assert got is not None and (got.token, got.expires, got.tls_identity) == (
        "tok-" + "x" * 40, NOW + 900_000, TLS)
    assert "tok-" not in repr(got) and c.warnings == []


def test_a_token_is_not_used_within_the_margin_of_its_end(c: Cache,
                                                          ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "t", node_expires=NOW + 900_000, tls_identity=TLS)
    c.now = NOW + 900_000 - lc.TOKEN_MARGIN_MS - 1
    assert c.cache.load_token(ks) is not None
    c.now += 1
    assert c.cache.load_token(ks) is None
    assert c.warnings == []  # expiry is normal: a fresh login, no warning


def test_a_cached_token_lives_at_most_an_hour_whatever_the_node_says(
        c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "t", node_expires=NOW + 86_400_000, tls_identity=TLS)
    c.now = NOW + lc.MAX_TOKEN_CACHE_MS - lc.TOKEN_MARGIN_MS
    assert c.cache.load_token(ks) is None


def _other_node(ks: keystore.Keystore) -> keystore.Keystore:
    return dataclasses.replace(ks, node_url="https://127.0.0.1:7502")


def _other_officer(ks: keystore.Keystore) -> keystore.Keystore:
    return dataclasses.replace(ks, officer="nl/mbakker")


def _rotated(ks: keystore.Keystore) -> keystore.Keystore:
    return dataclasses.replace(ks, signing=crypto.generate_signing_key())


@pytest.mark.parametrize("other", [_other_node, _other_officer, _rotated])
def test_a_cache_opens_only_for_its_keystore_and_node(c: Cache, ks: keystore.Keystore,
                                                      other: object) -> None:
    """Written for one node URL, officer or signing key, it opens for no other."""
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    c.cache.save_directory(ks, b"directory")
    assert c.cache.load_token(other(ks)) is None  # type: ignore[operator]
    assert c.cache.load_directory(other(ks)) is None  # type: ignore[operator]
    assert len(c.warnings) == 2
    assert all("does not open for this keystore and node" in w for w in c.warnings)


def test_a_changed_byte_anywhere_is_refused(c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    good = c.cache.token_path.read_bytes()
    for index in (0, len(good) // 2, len(good) - 1):
        raw = bytearray(good)
        raw[index] ^= 0x01
        certificates.write_secret(c.cache.token_path, bytes(raw))
        assert c.cache.load_token(ks) is None
    assert len(c.warnings) == 3


def test_a_file_written_in_the_future_is_refused(c: Cache, ks: keystore.Keystore) -> None:
    c.now = NOW + lc.MAX_CLOCK_BACK_MS + 1
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    c.now = NOW
    assert c.cache.load_token(ks) is None
    assert "written in the future" in c.warnings[0]


def test_a_file_others_may_read_or_write_is_refused(c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    for mode in (0o640, 0o604, 0o620):
        c.cache.token_path.chmod(mode)
        assert c.cache.load_token(ks) is None
    assert len(c.warnings) == 3 and all("others may read" in w for w in c.warnings)


def test_a_symbolic_link_or_a_fifo_is_refused(c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    target = c.cache.token_path.with_name("real")
    c.cache.token_path.rename(target)
    c.cache.token_path.symlink_to(target)
    assert c.cache.load_token(ks) is None
    assert "symbolic link" in c.warnings[-1]
    c.cache.token_path.unlink()
    os.mkfifo(c.cache.token_path, 0o600)  # opening it must not block
    assert c.cache.load_token(ks) is None
    assert "not a regular file" in c.warnings[-1]


def test_a_file_of_another_user_is_refused(c: Cache, ks: keystore.Keystore) -> None:
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    os.chown(c.cache.token_path, 12345, 12345)
    assert c.cache.load_token(ks) is None
    assert "owned by uid 12345" in c.warnings[-1]


def test_an_oversized_file_is_refused(c: Cache, ks: keystore.Keystore) -> None:
    certificates.write_secret(c.cache.token_path, b"x" * (lc.MAX_TOKEN_FILE_BYTES + 1))
    assert c.cache.load_token(ks) is None
    assert "larger than" in c.warnings[-1]


def test_the_directory_is_used_while_fresh_then_fetched_again(
        c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_directory(ks, b"as the node served it")
    c.now = NOW + lc.DIRECTORY_MAX_AGE_MS - 1
    assert c.cache.load_directory(ks) == b"as the node served it"
    c.now += 1
    assert c.cache.load_directory(ks) is None and c.warnings == []


def test_clear_removes_both_and_a_missing_file_is_no_warning(
        c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_token(ks, "t", node_expires=None, tls_identity=TLS)
    c.cache.save_directory(ks, b"d")
    c.cache.clear()
    assert not c.cache.token_path.exists() and not c.cache.directory_path.exists()
    assert c.cache.load_token(ks) is None and c.cache.load_directory(ks) is None
    c.cache.clear()
    assert c.warnings == []


def test_the_sent_list_round_trips_sealed_and_0600(c: Cache, ks: keystore.Keystore) -> None:
    """The desk's sent list (its timelines after a restart): subjects never in clear."""
    records = [{"id": "01M8ZGVMSX597W5W2G84RTP280", "to": ["be/jpeeters"],
                "subject": "Suspect vehicle", "sent": NOW, "status": "accepted"}]
    c.cache.save_sent(ks, records)
    raw = c.cache.sent_path.read_bytes()
    assert b"Suspect vehicle" not in raw and b"be/jpeeters" not in raw
    assert os.stat(c.cache.sent_path).st_mode & 0o777 == 0o600
    assert c.cache.sent_path.name == "officer.keystore.sent"
    assert c.cache.load_sent(ks) == records and c.warnings == []


def test_a_sent_list_of_another_keystore_is_ignored(c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_sent(ks, [{"id": "x"}])
    other = dataclasses.replace(ks, signing=crypto.generate_signing_key())
    assert c.cache.load_sent(other) == []
    assert c.warnings and "does not open" in c.warnings[0]


def test_the_sent_list_is_bounded(c: Cache, ks: keystore.Keystore) -> None:
    c.cache.save_sent(ks, [{"id": str(i)} for i in range(lc.MAX_SENT_KEPT + 10)])
    assert len(c.cache.load_sent(ks)) == lc.MAX_SENT_KEPT
