"""``Notifier.seal`` checks a recipient's encryption key once where it enters, not on every
notice: ``wrap_key`` checks it again where it is used, so a notice to a known recipient
pays one X25519 check per recipient, not two. A weak key is never remembered: it is
refused (recipient skipped, audited) on every notice. Real SQLite file, real cards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from liaison_net.clock import ManualClock
from liaison_net.core import crypto
from liaison_net.core.envelope import Kind, Precedence
from liaison_net.services import notices
from liaison_net.services.notices import Notifier
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, issued_card

NODE_KEY = crypto.generate_signing_key()
GOOD = Officer("nl/pbakker")
WEAK = Officer("nl/legacy")


async def _store(path: Path) -> NodeStore:
    store = NodeStore(path, "nl")
    await store.open()
    for officer in (GOOD, WEAK):
        card, raw = issued_card(officer, "nl", NODE_KEY)
        assert await store.put_card(card, raw, now=NOW, source="nl")
    await store.close()
    with sqlite3.connect(path) as db:  # a row from before keys were checked at entry
        db.execute("UPDATE directory SET encryption_public = ? WHERE officer = ?",
                   (bytes(32), WEAK.id))
    store = NodeStore(path, "nl")
    await store.open()
    return store


async def test_a_known_key_is_checked_once_and_a_weak_one_every_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _store(tmp_path / "node.db")
    checked: list[bytes] = []
    real = crypto.check_encryption_public

    def counting(public: bytes, what: str) -> bytes:  # the real check, counted
        checked.append(public)
        return real(public, what)

    monkeypatch.setattr(crypto, "check_encryption_public", counting)
    notifier = Notifier(node_id="nl", store=store, signing_key=lambda: NODE_KEY,
                        wake=lambda node: None, clock=ManualClock(NOW))
    try:
        for _ in range(3):
            sealed = await notifier.seal(Kind.NOTICE, label="test", plaintext=b"n",
                                         recipients=[GOOD.id, WEAK.id], ref=None,
                                         precedence=Precedence.ROUTINE)
            assert sealed is not None
            assert [r.officer for r in sealed.envelope.header.recipients] == [GOOD.id]
        good = GOOD.encryption.public
        # The first notice: at entry and in wrap_key; then in wrap_key only.
        assert checked.count(good) == 2 + 1 + 1
        assert checked.count(bytes(32)) == 3  # refused at entry on every notice
        with sqlite3.connect(tmp_path / "node.db") as db:
            refused = db.execute("SELECT count(*) FROM audit WHERE event = 'notice.refused'"
                                 ).fetchone()[0]
        assert refused == 3
    finally:
        await store.close()


async def test_the_remembered_keys_are_bounded(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Emptied when full: a directory of many officers never grows it past the bound
    (review16i: without the bound, nothing failed)."""
    monkeypatch.setattr(notices, "MAX_CHECKED_KEYS", 2)
    store = NodeStore(tmp_path / "node.db", "nl")
    await store.open()
    officers = [Officer(f"nl/o{i}") for i in range(5)]
    try:
        for officer in officers:
            card, raw = issued_card(officer, "nl", NODE_KEY)
            assert await store.put_card(card, raw, now=NOW, source="nl")
        notifier = Notifier(node_id="nl", store=store, signing_key=lambda: NODE_KEY,
                            wake=lambda node: None, clock=ManualClock(NOW))
        for officer in officers:
            sealed = await notifier.seal(Kind.NOTICE, label="test", plaintext=b"n",
                                         recipients=[officer.id], ref=None,
                                         precedence=Precedence.ROUTINE)
            assert sealed is not None
            assert 0 < len(notifier._checked_keys) <= 2
        assert officers[-1].encryption.public in notifier._checked_keys
    finally:
        await store.close()
