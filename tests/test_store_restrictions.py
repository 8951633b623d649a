"""Restriction updates as a node stores them (store/restriction_store.py), on a real SQLite
file: applied with the update's acceptance, to the original and its forwards; a recall
purges and owes the issuer an erasure receipt, in the same commit; an envelope that
arrives after its update is caught up; a relaxation of an applied update rolls the whole
acceptance back."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import pytest

from liaison_net.core import codec
from liaison_net.core.audit import detail
from liaison_net.core.effects import unpack_args
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import Tlp
from liaison_net.core.restriction import check_update
from liaison_net.core.retention import make_skeleton
from liaison_net.errors import PolicyRefused, Purged
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, make_tag, seal_from

JAN = Officer("nl/jdevries")
MARIE = Officer("be/mpeeters")
CLAUDE = Officer("lu/cschmit")
ORIGINAL = seal_from(JAN, [MARIE], b"the alert text itself")
FORWARD = seal_from(MARIE, [CLAUDE], b"the alert, passed on", ref=ORIGINAL.id,
                    original=make_skeleton(ORIGINAL.to_bytes()), now=NOW + 1)


def _update(kind: Kind, tag: object = None, at: int = NOW + HOUR_MS) -> Envelope:
    return seal_from(JAN, [MARIE], b"reason", kind=kind, now=at, expires=at + DAY_MS,
                     tag=tag or ORIGINAL.header.tag, ref=ORIGINAL.id,
                     original=make_skeleton(ORIGINAL.to_bytes()))


async def _receive(store: NodeStore, env: Envelope, *, update: bool = False) -> None:
    then = None
    if update:
        applied = check_update(env.header, ORIGINAL.header)
        then = functools.partial(store.restrictions.apply_in, update=applied, now=NOW + HOUR_MS)
    elif env.header.ref is not None:
        then = functools.partial(store.restrictions.catch_up_in, envelope_id=env.id,
                                 originals=[env.id, ORIGINAL.id], now=NOW + HOUR_MS)
    await store.accept(env, now=NOW, actor="nl", event="envelope.delivered_to_inbox",
                       local_recipients=[MARIE.id], remote_nodes=[], audit_detail=detail(),
                       received=True, then=then)


def _effects(path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT kind, args FROM effects").fetchall()
    return [unpack_args(kind, bytes(args)) for kind, args in rows]


async def test_a_recall_purges_the_original_and_its_forward_and_owes_a_receipt(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.sqlite3", "be")
    await store.open()
    try:
        await _receive(store, ORIGINAL)
        await _receive(store, FORWARD)
        recall = _update(Kind.RECALL)
        await _receive(store, recall, update=True)
        for envelope in (ORIGINAL, FORWARD):
            with pytest.raises(Purged, match="recalled by its owner"):
                await store.envelope_bytes(envelope.id)
        [receipt] = [a for a in _effects(tmp_path / "be.sqlite3") if a.get("label") == "erasure"]
        assert receipt["recipients"] == [JAN.id]
        content = receipt["content"]
        assert isinstance(content, dict)
        assert content["envelopes"] == [ORIGINAL.id, FORWARD.id] and content["node"] == "be"
        assert [u.id for u, _ in await store.restrictions.of_envelope(FORWARD.id)] == [recall.id]
        # The same update again (a peer's retry): a duplicate, nothing applied twice.
        await _receive(store, recall, update=True)
        assert len([a for a in _effects(tmp_path / "be.sqlite3")
                    if a.get("label") == "erasure"]) == 1
    finally:
        await store.close()


async def test_an_envelope_arriving_after_its_recall_is_purged_on_arrival(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "lu.sqlite3", "lu")
    await store.open()
    try:
        await _receive(store, _update(Kind.RECALL), update=True)  # applies to nothing yet
        await _receive(store, FORWARD)
        with pytest.raises(Purged):
            await store.envelope_bytes(FORWARD.id)
    finally:
        await store.close()


async def test_an_update_relaxing_one_applied_is_refused_and_changes_nothing(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "be.sqlite3", "be")
    await store.open()
    try:
        await _receive(store, ORIGINAL)
        narrow = make_tag(share_with=frozenset({"nl", "be"}))
        await _receive(store, _update(Kind.RESTRICT, narrow), update=True)
        wider_but_red = make_tag(tlp=Tlp.RED)
        late = _update(Kind.RESTRICT, wider_but_red, at=NOW + 2 * HOUR_MS)
        with pytest.raises(PolicyRefused) as err:
            await _receive(store, late, update=True)
        assert err.value.code == "policy.update_relaxes"
        with sqlite3.connect(tmp_path / "be.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM envelopes WHERE id = ?",
                              (late.id,)).fetchone() == (0,)
            (tag,) = db.execute("SELECT tag FROM restrictions").fetchone()
        assert codec.unpack(bytes(tag), what="tag", max_bytes=4096)["share_with"] == ["be", "nl"]
        assert await store.envelope_bytes(ORIGINAL.id) == ORIGINAL.to_bytes()  # not a recall
        # An earlier retention is the sweep's to apply: the original goes at the new date.
        sooner = make_tag(share_with=frozenset({"nl", "be"}), retain_until=NOW + 3 * DAY_MS)
        await _receive(store, _update(Kind.RESTRICT, sooner, at=NOW + 3 * HOUR_MS),
                       update=True)
        assert await store.retention.purge_due(NOW + 3 * DAY_MS - 1) == 0
        assert await store.retention.purge_due(NOW + 3 * DAY_MS) >= 1
        with pytest.raises(Purged, match="retain_until"):
            await store.envelope_bytes(ORIGINAL.id)
    finally:
        await store.close()


async def test_a_recall_applied_by_one_worker_reaches_the_others_shortcut(
        tmp_path: Path) -> None:
    """Several workers serve one node's database (docs/operations.md). A worker that has
    answered "no update applied here" keeps that answer without a query; an update another
    worker applies moves ``key_epoch`` in its transaction, and the watch that follows the
    epoch (``forget_cached_keys``) makes the first worker ask again: else a recalled
    envelope would still be forwarded and delivered through it until its restart."""
    a = NodeStore(tmp_path / "be.sqlite3", "be")
    b = NodeStore(tmp_path / "be.sqlite3", "be")
    await a.open()
    await b.open()
    try:
        await _receive(a, ORIGINAL)
        assert await b.restrictions.about([ORIGINAL.id]) == []  # kept: none applied
        epoch = await b.key_epoch()
        await _receive(a, _update(Kind.RECALL), update=True)
        assert await b.key_epoch() > epoch  # what worker B's watch reads
        b.forget_cached_keys()  # what the watch does when the epoch moved
        applied = [u.id for u in await a.restrictions.about([ORIGINAL.id])]
        assert applied and [u.id for u in await b.restrictions.about([ORIGINAL.id])] == applied
        assert await b.restrictions.count_of(ORIGINAL.id) == 1
    finally:
        await a.close()
        await b.close()
