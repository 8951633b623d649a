"""A peer's push of many cards is one write: the key cache's stamp moves once for the push,
not once per card. Each move sends every envelope being decided on the node back to be
decided again (``KeysChanged``); card by card, a push of a few hundred cards kept the
node's whole intake answering ``keys_changed`` while it was written (review16g). Real
SQLite files."""

from __future__ import annotations

from pathlib import Path

from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import EnrolmentRequest, OfficerCard, issue_card, verify_card
from liaison_net.core.limits import DAY_MS
from liaison_net.errors import Conflict
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer
from tests.test_receive_many import NL


def _card(officer: Officer, version: int = 1,
          signing_public: bytes | None = None) -> tuple[OfficerCard, bytes]:
    raw = issue_card(EnrolmentRequest(officer.id, "N", "r",
                                      signing_public or officer.signing.public,
                                      officer.encryption.public, Almanac()),
                     node_id="nl", node_key=NL, version=version, now=NOW,
                     valid_for_ms=DAY_MS)
    return verify_card(raw, node_public=NL.public, node_id="nl", now=None), raw


async def test_a_push_of_many_cards_moves_the_key_stamp_once(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        officers = [Officer(f"nl/o{i}") for i in range(50)]
        before, commits = store.keys_stamp(), store.db.commits
        assert before is not None
        put = await store.put_cards([_card(o) for o in officers], now=NOW, source="nl")
        assert put == [True] * 50
        assert store.db.commits == commits + 1
        after = store.keys_stamp()
        assert after is not None and after - before == 2  # one group: begin, end
        for o in officers:
            assert await store.officer_keys(o.id) is not None
    finally:
        await store.close()


async def test_a_card_refused_in_a_push_changes_nothing_of_the_others(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.db", "be")
    await store.open()
    try:
        a, b, c = Officer("nl/a"), Officer("nl/b"), Officer("nl/c")
        thief = _card(b, signing_public=a.signing.public)  # a's signing key on b's card
        put = await store.put_cards([_card(a), thief, _card(c), _card(a)], now=NOW,
                                    source="nl")
        assert put[0] is True and isinstance(put[1], Conflict)
        assert put[2] is True and put[3] is False  # a's version 1 again: not newer
        assert await store.officer_keys(b.id) is None
        assert await store.officer_keys(c.id) is not None
        cards = await store.db.fetchall(
            "SELECT COUNT(*) FROM audit_named WHERE event = 'directory.card'")
        assert cards[0][0] == 2  # the refused card's entry rolled back with it
        _entries, broken = await store.verify_audit()
        assert broken is None  # the chain continues past the rolled-back entry
    finally:
        await store.close()
