"""Envelopes a node issued for officers elsewhere only (evidence, notices) are done with once
every peer has taken them (migration 11, issue 16: bytes on disk): deleted in the write that
records the last delivery, audit entries kept; one refused or still queued is kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from liaison_net.core.audit import detail
from liaison_net.core.effects import notice
from liaison_net.core.envelope import Envelope
from liaison_net.errors import NotFound
from liaison_net.store.effect_store import Issued, add_effects
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
LUC = Officer("lu/lschmit")


def _rows(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(sql, args).fetchall())


def _carriers(path: Path, table: str) -> set[bytes]:
    sql = ("SELECT i.envelope_id FROM evidence_covers c JOIN inbox i ON i.seq = c.inbox_seq"
           if table == "evidence_covers" else f"SELECT carrier FROM {table}")
    return {bytes(r[0]) for r in _rows(path, sql)}  # type: ignore[arg-type]


async def _issue(store: NodeStore, items: list[tuple[Envelope, list[str], list[str]]],
                 covers: tuple[bytes, ...]) -> None:
    """Store ``items`` (envelope, local officers, remote nodes) as the effects drain does."""
    effects = [notice("non-delivery", recipients=[BOB.id], ref=env.id, content={})
               for env, _, _ in items]

    async def op(txn: object) -> None:
        await add_effects(txn, effects, NOW)  # type: ignore[arg-type]

    await store.db.write(op)
    pending = await store.effects.due(NOW, 100)
    issued = [Issued(p, env, NOW, "notice.issued", local, remote, detail(), covers=covers)
              for p, (env, local, remote) in zip(pending, items, strict=True)]
    assert await store.complete_effects(issued) == [True] * len(items)


async def test_an_issued_envelope_is_forgotten_once_every_peer_took_it(
        tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    store = NodeStore(path, "nl")
    await store.open()
    about = seal_from(ALICE, [BOB]).id
    one_peer, two_peers, refused, ours = (seal_from(ALICE, [BOB], now=NOW + i)
                                          for i in range(4))
    try:
        await _issue(store, [(one_peer, [], ["be"]), (two_peers, [], ["be", "lu"]),
                             (refused, [], ["lu"]), (ours, [ALICE.id], ["be"])],
                     covers=(about,))
        # Covers are kept while the carrier is: an inbox here reads them by envelope
        # (``evidence_covers``), the sender sending the peer its ``covers`` by carrier.
        assert _carriers(path, "evidence_covers") == {ours.id}
        assert _carriers(path, "outgoing_covers") == {one_peer.id, two_peers.id, refused.id,
                                                      ours.id}
        assert await store.covers_of([one_peer.id, ours.id]) == {one_peer.id: [about],
                                                                  ours.id: [about]}
        await store.finish_hops("be", now=NOW + 1, delivered=[one_peer.id, two_peers.id,
                                                              ours.id], refused=[])
        with pytest.raises(NotFound):
            await store.envelope_bytes(one_peer.id)
        assert await store.hop_states(one_peer.id) == {}
        # Still owed to lu: kept whole, only its delivered hop is gone.
        assert await store.envelope_bytes(two_peers.id) == two_peers.to_bytes()
        assert await store.hop_states(two_peers.id) == {"lu": ("queued", None)}
        # One of our officers holds it: never forgotten.
        assert await store.envelope_bytes(ours.id) == ours.to_bytes()
        await store.finish_hops("lu", now=NOW + 2, delivered=[two_peers.id],
                                refused=[(refused.id, "policy.share_with")])
        left = {bytes(r[0]) for r in _rows(path, "SELECT id FROM envelopes")}  # type: ignore[arg-type]
        assert left == {refused.id, ours.id}
        assert _carriers(path, "outgoing_covers") == left  # forgotten with their carriers
        assert await store.covers_of([one_peer.id, two_peers.id]) == {}
        assert _carriers(path, "evidence_covers") == {ours.id}
        assert _rows(path, "SELECT COUNT(*) FROM forget_when_delivered") == [(1,)]  # refused
        relayed = _rows(path, "SELECT envelope_id FROM audit_named "
                              "WHERE event = 'envelope.relayed'")
        assert sorted(bytes(r[0]) for r in relayed) == sorted(  # type: ignore[arg-type]
            [one_peer.id, two_peers.id, ours.id, two_peers.id])
        assert (await store.verify_audit())[1] is None
    finally:
        await store.close()
