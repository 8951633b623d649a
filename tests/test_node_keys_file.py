"""The node keys an officer's client holds (``<keystore>.nodekeys``, client.local_cache):
sealed and bound like the caches, kept across `logout`, and anything planted or changed is
ignored with a warning (the client is then at first contact, never trusting the file)."""

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
KEYS = {"nl": crypto.generate_signing_key().public, "be": crypto.generate_signing_key().public}


@pytest.fixture(scope="module")
def ks(tmp_path_factory: pytest.TempPathFactory) -> keystore.Keystore:
    root = tmp_path_factory.mktemp("nodekeys-ks")
    ca = certificates.init_network(root / "certs",
                                   now=datetime(2026, 3, 1, tzinfo=UTC)).ca_cert.read_bytes()
    made, _ = keystore.create(root / "officer.keystore", "nl/jdevries", "Jan de Vries",
                              "liaison officer", "https://127.0.0.1:7501", ca, PASSPHRASE)
    return made


def cache(tmp_path: Path, warnings: list[str]) -> lc.LocalCache:
    return lc.LocalCache(tmp_path / "officer.keystore", now_ms=lambda: NOW,
                         warn=warnings.append)


def test_held_keys_round_trip_0600_and_survive_logout(tmp_path: Path,
                                                      ks: keystore.Keystore) -> None:
    warnings: list[str] = []
    c = cache(tmp_path, warnings)
    assert c.load_node_keys(ks) == ({}, frozenset())  # first contact
    c.save_node_keys(ks, KEYS, frozenset(KEYS))
    assert c.node_keys_path == tmp_path / "officer.keystore.nodekeys"
    assert os.stat(c.node_keys_path).st_mode & 0o777 == 0o600
    c.clear()  # what `liaison logout` does: the held keys are a trust anchor, not a cache
    assert c.load_node_keys(ks) == (KEYS, frozenset(KEYS)) and warnings == []


def test_a_changed_or_foreign_file_is_ignored_with_a_warning(tmp_path: Path,
                                                             ks: keystore.Keystore) -> None:
    warnings: list[str] = []
    c = cache(tmp_path, warnings)
    c.save_node_keys(ks, KEYS, frozenset(KEYS))
    other = dataclasses.replace(ks, signing=crypto.generate_signing_key())
    assert c.load_node_keys(other) == ({}, frozenset())
    raw = bytearray(c.node_keys_path.read_bytes())
    raw[-1] ^= 1
    c.node_keys_path.write_bytes(bytes(raw))
    assert c.load_node_keys(ks) == ({}, frozenset())
    assert len(warnings) == 2 and all("does not open" in w for w in warnings)
