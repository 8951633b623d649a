"""The store moves hops exactly as the delivery table says (issue 15, item 2).

A Hypothesis state machine plays a sender and the expiry sweep against a real ``NodeStore``
on a temporary SQLite file, with the pure table (``core.delivery.next_state``) as the
model: envelopes accepted with hops to several peers (and again, as duplicates), delivered
and refused batches naming known, unknown, repeated and already final hops, and expiry
sweeps at advancing times with small limits. After every step: each hop's stored state is
the model's, no hop ever left a final state, there is one audit entry per move made and
none for an event refused, and ``queue_depth``, ``status``, ``next_batch`` and the refused
event count agree with the model.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import event as note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from liaison_net.core.audit import detail
from liaison_net.core.delivery import HopEvent, HopState, next_state
from liaison_net.core.envelope import Envelope
from liaison_net.core.limits import MINUTE_MS
from liaison_net.errors import Conflict
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from

ALICE = Officer("nl/jdevries")
PEERS = ["be", "lu", "de-nw"]
CODES = ["forbidden", "policy.share_with", "bad_timestamp", "expired"]
HOP_AUDITS = {"envelope.relayed": HopEvent.ACK, "envelope.refused_by_peer": HopEvent.REFUSE,
              "envelope.expired": HopEvent.EXPIRE}
POOL_SIZE = 6  # envelopes the machine draws from; the ones never accepted are unknown ids

_pool: list[Envelope] = []


def pool() -> list[Envelope]:
    """Sealed once per session (sealing is the slow part): envelopes expire in pairs, 1, 2
    and 3 minutes after NOW, so a sweep often finds more hops due than its limit."""
    if not _pool:
        recipients = [Officer(f"{peer}/duty") for peer in PEERS]
        _pool.extend(seal_from(ALICE, recipients, plaintext=b"hop %d" % i, now=NOW,
                               expires=NOW + (i % 3 + 1) * MINUTE_MS) for i in range(POOL_SIZE))
    return _pool


Hop = tuple[str, bytes]  # (peer, envelope id)


class StoreAgainstTable(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="hoptable-"))
        self.store = NodeStore(self.dir / "n.sqlite3", "nl")
        self.run(self.store.open())
        self.now = NOW
        self.accepted: set[bytes] = set()
        self.model: dict[Hop, HopState] = {}
        self.finals: dict[Hop, HopState] = {}  # every hop ever seen final in the store
        self.audits: Counter[tuple[str, bytes, str]] = Counter()  # (event, id, peer)
        self.refused_events = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the model ------------------------------------------------------------------------

    def apply(self, hop: Hop, event: HopEvent) -> bool:
        """The table's verdict for one event; True if the hop moves (one audit entry)."""
        state = self.model.get(hop)
        try:
            if state is None:
                raise Conflict("no such hop")
            self.model[hop] = next_state(state, event)
        except Conflict:
            self.refused_events += 1
            note(f"{event.value} refused")
            return False
        audit = {HopEvent.ACK: "envelope.relayed", HopEvent.REFUSE: "envelope.refused_by_peer",
                 HopEvent.EXPIRE: "envelope.expired"}[event]
        self.audits[(audit, hop[1], hop[0])] += 1
        note(f"{event.value} moved")
        return True

    # --- rules ----------------------------------------------------------------------------

    @initialize(indices=st.lists(st.integers(0, POOL_SIZE - 1), min_size=1, max_size=4),
                peers=st.lists(st.sampled_from(PEERS), unique=True, min_size=1,
                               max_size=len(PEERS)))
    def first_envelopes(self, indices: list[int], peers: list[str]) -> None:
        for index in indices:
            self.accept(index, peers)

    @rule(index=st.integers(0, POOL_SIZE - 1),
          peers=st.lists(st.sampled_from(PEERS), unique=True, max_size=len(PEERS)))
    def accept(self, index: int, peers: list[str]) -> None:
        """An envelope with a queued hop per peer; a second copy (whatever peers it
        names) changes nothing."""
        env = pool()[index]
        outcome = self.run(self.store.accept(
            env, now=self.now, actor=ALICE.id, event="envelope.accepted",
            local_recipients=[], remote_nodes=peers, audit_detail=detail()))
        assert outcome.duplicate == (env.id in self.accepted)
        if not outcome.duplicate:
            self.accepted.add(env.id)
            self.model.update({(peer, env.id): HopState.QUEUED for peer in peers})

    @rule(peer=st.sampled_from(PEERS), data=st.data())
    def answer(self, peer: str, data: st.DataObject) -> None:
        """A peer's answer to a batch: mostly its own hops, some repeated, unknown (never
        accepted, or accepted without a hop to this peer) or already final."""
        ids = data.draw(st.lists(self.some_id(peer), max_size=6), label="delivered")
        refused = data.draw(st.lists(st.tuples(self.some_id(peer), st.sampled_from(CODES)),
                                     max_size=4), label="refused")
        for eid in ids:
            self.apply((peer, eid), HopEvent.ACK)
        newly = [(eid, code, ALICE.id) for eid, code in refused
                 if self.apply((peer, eid), HopEvent.REFUSE)]
        got = self.run(self.store.finish_hops(peer, now=self.now, delivered=ids,
                                              refused=refused))
        assert got == newly

    def some_id(self, peer: str) -> st.SearchStrategy[bytes]:
        own = sorted(eid for (p, eid) in self.model if p == peer)
        anyone = st.sampled_from([env.id for env in pool()])
        return st.sampled_from(own) | st.sampled_from(own) | anyone if own else anyone

    @rule(advance=st.sampled_from([0, 1, MINUTE_MS // 2, MINUTE_MS]), limit=st.integers(1, 4))
    def sweep(self, advance: int, limit: int) -> None:
        """The expiry sweep at a later time, ending at most ``limit`` queued hops."""
        self.now += advance
        due = {hop for hop, state in self.model.items()
               if state is HopState.QUEUED and self.expires(hop[1]) <= self.now}
        got = self.run(self.store.expire_due(self.now, limit=limit))
        ended = {(peer, eid) for eid, peer, _sender in got}
        assert len(got) == len(ended) == min(limit, len(due)), (got, due)
        assert ended <= due and all(sender == ALICE.id for _e, _p, sender in got)
        for hop in sorted(ended):
            assert self.apply(hop, HopEvent.EXPIRE)

    @rule(limit=st.integers(1, 4), refuse=st.booleans())
    def late_answer(self, limit: int, refuse: bool) -> None:
        """A batch answered after the sweep ended its hops (the answer outlived the expiry
        margin): the hop stays EXPIRED, the answer is refused and audits nothing."""
        self.sweep(MINUTE_MS, limit)
        expired = sorted(hop for hop, state in self.model.items()
                         if state is HopState.EXPIRED)
        for peer in PEERS:
            ids = [eid for p, eid in expired if p == peer]
            if not ids:
                continue
            event = HopEvent.REFUSE if refuse else HopEvent.ACK
            for eid in ids:
                assert not self.apply((peer, eid), event)
            got = self.run(self.store.finish_hops(
                peer, now=self.now, delivered=[] if refuse else ids,
                refused=[(eid, "expired") for eid in ids] if refuse else []))
            assert got == []

    @rule(data=st.data())
    def event_on_a_final_hop(self, data: st.DataObject) -> None:
        """Any event aimed at a hop that is already over is refused and changes nothing."""
        finals = sorted(hop for hop, state in self.model.items() if state.final)
        if not finals:
            return
        peer, eid = data.draw(st.sampled_from(finals))
        event = data.draw(st.sampled_from([HopEvent.ACK, HopEvent.REFUSE]))
        assert not self.apply((peer, eid), event)
        delivered = [eid] if event is HopEvent.ACK else []
        refused = [(eid, "forbidden")] if event is HopEvent.REFUSE else []
        assert self.run(self.store.finish_hops(peer, now=self.now, delivered=delivered,
                                               refused=refused)) == []

    def expires(self, eid: bytes) -> int:
        return next(e.header.expires for e in pool() if e.id == eid)

    # --- what must hold after every step --------------------------------------------------

    @invariant()
    def stored_states_are_the_models(self) -> None:
        rows = self.run(self.store.db.fetchall("SELECT node, envelope_id, state FROM hops"))
        stored = {(r[0], bytes(r[1])): HopState(r[2]) for r in rows}
        for hop, final in self.finals.items():  # checked apart from the model (same table)
            assert stored.get(hop) is final, f"hop {hop} left {final} for {stored.get(hop)}"
        self.finals.update((hop, state) for hop, state in stored.items() if state.final)
        assert stored == self.model

    @invariant()
    def one_audit_entry_per_move(self) -> None:
        entries = self.run(self.store.audit_entries())
        audits = Counter((e.event, e.envelope_id, json.loads(e.detail)["peer"])
                         for e in entries if e.event in HOP_AUDITS)
        assert audits == self.audits
        assert self.store.illegal_hop_events == self.refused_events

    @invariant()
    def queue_and_status_agree(self) -> None:
        counts: dict[HopState, Counter[str]] = {state: Counter() for state in HopState}
        for (peer, _eid), state in self.model.items():
            counts[state][peer] += 1
        assert self.run(self.store.queue_depth()) == dict(counts[HopState.QUEUED])
        status = self.run(self.store.status())
        assert status.queued == dict(counts[HopState.QUEUED])
        assert status.delivered == dict(counts[HopState.DELIVERED])
        assert status.refused == dict(counts[HopState.REFUSED])
        assert status.expired == dict(counts[HopState.EXPIRED])
        for peer in PEERS:
            offered = {eid for eid, _raw in self.run(self.store.next_batch(peer, 100,
                                                                           now=self.now))}
            assert offered == {eid for (p, eid), state in self.model.items() if p == peer
                               and state is HopState.QUEUED and self.expires(eid) > self.now}


# Bounded so it runs in seconds in `make test`. No explain phase: it replays up to 500
# variations per argument of a failing case, each opening a store, which turns a failure
# report from seconds into many minutes.
StoreAgainstTable.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow])
TestStoreAgainstTable = StoreAgainstTable.TestCase
