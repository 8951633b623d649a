"""The in-memory key cache (``store/key_cache.py``) on a real SQLite file, attacked: a key
looked up (and so cached) before its revocation is refused by the very next lookup after
the revocation commits, a rotated key's grace still ends on time, no lookup made while a
key change is being written fills the cache, and the cache stays bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaison_net.core import crypto
from liaison_net.errors import Conflict, Revoked
from liaison_net.store.database import WriteTxn, changes_keys
from liaison_net.store.key_cache import MAX_WEAKENED, KeyCache
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW
from tests.test_store_key_grace import GRACE, JAN, _card, _revoke


@pytest.fixture
async def store(tmp_path: Path) -> NodeStore:
    store = NodeStore(tmp_path / "n.sqlite3", "nl")
    await store.open()
    yield store  # type: ignore[misc]
    await store.close()


async def test_a_cached_key_is_refused_by_the_first_lookup_after_its_revocation(
        store: NodeStore) -> None:
    key = crypto.generate_signing_key()
    card, raw = _card(key, 1)
    assert await store.put_card(card, raw, now=NOW, source="nl")
    for _ in range(3):  # cached, and served from the cache
        assert await store.keys.signer(key.key_id, now=NOW) is not None
        assert await store.keys.officer_revocation(JAN, now=NOW) is None
        assert await store.officer_keys(JAN) == (key.public, card.encryption_public)
    assert store.db.key_cache.hits >= 6
    await _revoke(store, key.key_id, "laptop stolen")
    with pytest.raises(Revoked, match="laptop stolen"):
        await store.keys.signer(key.key_id, now=NOW)
    assert await store.keys.officer_revocation(JAN, now=NOW) == "laptop stolen"


async def test_a_rotation_moves_the_cached_keys_and_the_grace_still_ends(
        store: NodeStore) -> None:
    old, new = crypto.generate_signing_key(), crypto.generate_signing_key()
    card, raw = _card(old, 1)
    assert await store.put_card(card, raw, now=NOW, source="nl")
    assert await store.keys.signer(old.key_id, now=NOW) is not None  # cached as current
    assert (await store.officer_keys(JAN) or (b"",))[0] == old.public
    card, raw = _card(new, 2)
    assert await store.put_card(card, raw, now=NOW, source="nl", grace_ms=GRACE)
    assert (await store.officer_keys(JAN) or (b"",))[0] == new.public
    for _ in range(2):  # the second round comes from the cache: same answers
        assert await store.keys.signer(old.key_id, now=NOW + GRACE - 1) is not None
        assert await store.keys.signer(old.key_id, now=NOW + GRACE) is None
        assert await store.keys.signer(new.key_id, now=NOW + GRACE) is not None


async def test_a_revocation_written_with_other_writes_in_one_group_invalidates(
        store: NodeStore) -> None:
    """Group commit: the revocation shares its commit with unrelated writes, one of which
    fails alone; the key is still refused right after."""
    key = crypto.generate_signing_key()
    card, raw = _card(key, 1)
    assert await store.put_card(card, raw, now=NOW, source="nl")
    assert await store.keys.signer(key.key_id, now=NOW) is not None

    async def failing(txn: WriteTxn) -> None:
        await txn.audit(NOW, "test.failing", "nl", "{}")
        raise Conflict("refused alone")

    async def fine(txn: WriteTxn) -> None:
        await txn.audit(NOW, "test.fine", "nl", "{}")

    results = await asyncio.gather(store.db.write(failing), store.db.write(fine),
                                   _revoke(store, key.key_id, "compromised"),
                                   return_exceptions=True)
    assert isinstance(results[0], Conflict) and results[1:] == [None, None]
    with pytest.raises(Revoked, match="compromised"):
        await store.keys.signer(key.key_id, now=NOW)


async def test_unknown_keys_and_officers_are_not_cached(store: NodeStore) -> None:
    """Anyone can make up key ids and officer names: they must not fill the cache."""
    for i in range(50):
        assert await store.keys.signer(bytes([i]) * 8, now=NOW) is None
        assert await store.officer_keys(f"nl/nobody{i}") is None
    assert len(store.db.key_cache) == 0


async def test_no_lookup_is_served_or_stored_while_a_key_change_is_being_written() -> None:
    cache = KeyCache()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        return f"v{loads}"

    assert await cache.get("k", load) == "v1"
    assert await cache.get("k", load) == "v1"  # cached
    cache.begin_change()  # a group touching keys runs on the writer thread
    assert await cache.get("k", load) == "v2"  # read from the database, not the cache
    assert await cache.get("k", load) == "v3"  # and not stored meanwhile
    cache.end_change()
    assert await cache.get("k", load) == "v4"
    assert await cache.get("k", load) == "v4"


async def test_a_lookup_that_straddles_a_key_change_does_not_store_what_it_read() -> None:
    cache = KeyCache()

    async def stale() -> str:
        cache.begin_change()  # the change starts and commits while this read is out
        cache.end_change()
        return "before the change"

    assert await cache.get("k", stale) == "before the change"
    assert len(cache) == 0


async def test_the_cache_is_bounded() -> None:
    cache = KeyCache(max_entries=4)

    async def load() -> int:
        return 1

    for i in range(10):
        await cache.get(i, load)
    assert len(cache) == 4
    with pytest.raises(ValueError, match="at least one"):
        KeyCache(max_entries=0)


@pytest.mark.parametrize(("sql", "changes"), [
    ("INSERT OR REPLACE INTO directory (officer) VALUES (?)", True),
    ("UPDATE key_history SET card = ? WHERE signing_key_id = ?", True),
    ("INSERT OR IGNORE INTO revocations (key_id) VALUES (?)", True),
    ("  delete from key_history where grace_until < ?", True),
    ("SELECT officer FROM directory WHERE signing_key_id = ?", False),
    ("INSERT OR IGNORE INTO revocation_outbox (node, key_id) VALUES (?, ?)", False),
    ("INSERT INTO inbox (officer) VALUES (?)", False),
])
def test_statements_that_change_keys_are_recognised(sql: str, changes: bool) -> None:
    assert changes_keys(sql) is changes


def test_every_key_table_write_in_the_store_is_recognised() -> None:
    """Every statement literal in the store that writes a key table trips the gate."""
    import re

    root = Path(__file__).parent.parent / "liaison_net" / "store"
    seen = 0
    for path in root.glob("*_store.py"):
        text = path.read_text()
        for match in re.finditer(r'"((?:INSERT|UPDATE|DELETE)[^"]*(?:"\s*"[^"]*)*)"', text):
            sql = re.sub(r'"\s*"', "", match.group(1))
            if re.search(r"\b(INTO|UPDATE|FROM)\s+(directory|key_history|revocations)\b", sql):
                seen += 1
                assert changes_keys(sql), sql
    assert seen >= 4  # put_card (2), supersede_node_key, add_revocation (2)


async def test_the_stamp_moves_with_every_card_and_revocation_and_with_nothing_else(
        store: NodeStore) -> None:
    """The federation sender skips its directory and revocation reads while the stamp
    stands still: a card or a revocation written must move it; an audit entry not."""
    stamp = store.db.key_cache.stamp()
    assert stamp is not None

    async def unrelated(txn: WriteTxn) -> None:
        await txn.audit(NOW, "test.unrelated", "nl", "{}")

    await store.db.write(unrelated)
    assert store.db.key_cache.stamp() == stamp
    key = crypto.generate_signing_key()
    card, raw = _card(key, 1)
    assert await store.put_card(card, raw, now=NOW, source="nl")
    after_card = store.db.key_cache.stamp()
    assert after_card is not None and after_card != stamp
    await _revoke(store, key.key_id, "laptop stolen")
    after_revocation = store.db.key_cache.stamp()
    assert after_revocation is not None and after_revocation != after_card


def test_weakenings_are_told_per_principal_and_an_old_decision_is_never_called_fresh() -> None:
    """``weakened_since``: a revocation or superseded key of one principal sends back only
    decisions about that principal; once the record no longer reaches back to a decision's
    generation, the decision is taken as stale."""
    cache = KeyCache()
    decided = cache.generation()
    cache.begin_change()
    cache.note_weakened("nl/jdevries")
    assert cache.weakened_since(decided, {"nl/jdevries"})  # in the group under way
    cache.end_change()
    assert cache.weakened_since(decided, {"nl/jdevries", "be/mpeeters"})
    assert not cache.weakened_since(decided, {"be/mpeeters"})
    assert not cache.weakened_since(cache.generation(), {"nl/jdevries"})  # decided after
    for i in range(MAX_WEAKENED):
        cache.begin_change()
        cache.note_weakened(f"lu/o{i}")
        cache.end_change()
    assert cache.weakened_since(decided, {"be/mpeeters"})  # too old to tell: stale
