"""Effects in the same commit (core/effects.py, services/effects.py), on a real SQLite file:
what a decision owes is durable with the decision, and the drain issues it exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison_net.clock import ManualClock
from liaison_net.config import EffectsConfig
from liaison_net.core import codec, crypto
from liaison_net.core.almanac import Almanac
from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect, notice, origin_evidence
from liaison_net.core.envelope import Envelope, Kind, Urgency
from liaison_net.core.evidence import Step, claimed_statement
from liaison_net.core.identity import EnrolmentRequest, issue_card, verify_card
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.sealing import SignerKey, open_envelope, verify
from liaison_net.metrics import NodeMetrics
from liaison_net.services import effects as effects_service
from liaison_net.services.effects import PENDING_EVERY_MS, EffectDrain
from liaison_net.services.notices import Notifier
from liaison_net.store.effect_store import Issued
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.test_inbox_stream import until

ALICE = Officer("nl/jdevries")
LOCAL = Officer("nl/pbakker")
BOB = Officer("be/mpeeters")
NODE_KEY = crypto.generate_signing_key()


async def _open(path: Path) -> NodeStore:
    store = NodeStore(path, "nl")
    await store.open()
    return store


async def _enrol(store: NodeStore, officer: Officer) -> None:
    raw = issue_card(EnrolmentRequest(officer.id, "N", "r", officer.signing.public,
                                      officer.encryption.public, Almanac()),
                     node_id="nl", node_key=NODE_KEY, version=1, now=NOW,
                     valid_for_ms=DAY_MS)
    card = verify_card(raw, node_public=NODE_KEY.public, node_id="nl", now=None)
    assert await store.put_card(card, raw, now=NOW, source="nl")


def _drain(store: NodeStore, clock: ManualClock) -> EffectDrain:
    wakes: list[str] = []
    notifier = Notifier(node_id="nl", store=store, signing_key=lambda: NODE_KEY,
                        wake=wakes.append, clock=clock)
    return EffectDrain(node_id="nl", store=store, notifier=notifier, config=EffectsConfig(),
                       metrics=NodeMetrics(), clock=clock)


async def _accept_at_origin(store: NodeStore, env: Envelope, local: list[str]) -> bool:
    outcome = await store.accept(
        env, now=NOW, actor=ALICE.id, event="envelope.accepted", local_recipients=local,
        remote_nodes=["be"], audit_detail=detail(),
        effects=origin_evidence(env.header, local=local, at=NOW), track_request=True)
    return outcome.duplicate


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(sql).fetchone()[0])


def _evidence_steps(path: Path, about: bytes, reader: Officer) -> list[str]:
    """The steps of the evidence envelopes about ``about`` stored on this node, opened."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT raw FROM envelopes WHERE kind = 'evidence' AND ref = ?",
                          (about,)).fetchall()
    node = {NODE_KEY.key_id: SignerKey("nl/node", NODE_KEY.public)}
    steps = []
    for (raw,) in rows:
        env = verify(bytes(raw), node.get, now=None)
        steps.append(claimed_statement(
            open_envelope(env, reader.id, [reader.encryption])).step.value)
    return sorted(steps)


async def test_an_acceptance_and_its_evidence_commit_together(tmp_path: Path) -> None:
    """Accept, close before any drain (a crash right after the commit), reopen: the
    evidence is owed on disk; draining twice issues it once, as the same envelopes and
    audit events as before (``evidence.issued``)."""
    path = tmp_path / "n.sqlite3"
    env = seal_from(ALICE, [BOB, LOCAL])
    store = await _open(path)
    try:
        assert not await _accept_at_origin(store, env, [LOCAL.id])
    finally:
        await store.close()
    assert _count(path, "SELECT COUNT(*) FROM effects") == 2  # accepted + relayed (local)

    clock = ManualClock(NOW + 1000)
    store = await _open(path)
    try:
        await _enrol(store, ALICE)
        drain = _drain(store, clock)
        assert await drain.drain_once() == 2
        assert await drain.drain_once() == 0
        assert await store.effects.pending() == 0
        assert (await store.status()).effects_pending == 0
        assert await store.verify_audit() == (4, None)  # card, accept, 2 x evidence.issued
    finally:
        await store.close()
    assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = 'evidence.issued'") == 2
    assert _evidence_steps(path, env.id, ALICE) == [Step.ACCEPTED.value, Step.RELAYED.value]


async def test_a_second_copy_owes_nothing_more(tmp_path: Path) -> None:
    """A retry that finds the envelope stored (``duplicate``) adds no second effect: the
    first acceptance's effects already stand for it."""
    store = await _open(tmp_path / "n.sqlite3")
    try:
        env = seal_from(ALICE, [BOB])
        assert not await _accept_at_origin(store, env, [])
        assert await _accept_at_origin(store, env, [])
        assert await store.effects.pending() == 1
    finally:
        await store.close()


async def test_an_effect_completes_once_even_if_sealed_twice(tmp_path: Path) -> None:
    """Two drains sealing the same effect (or one sealing it again after a crash): only
    the first store call stores anything; the second finds the effect gone."""
    store = await _open(tmp_path / "n.sqlite3")
    clock = ManualClock(NOW)
    try:
        await _enrol(store, ALICE)
        env = seal_from(ALICE, [BOB])
        await _accept_at_origin(store, env, [])
        drain = _drain(store, clock)
        [effect] = await store.effects.due(NOW, 10)
        results = []
        for _ in range(2):
            sealed = await drain._seal(effect)
            assert sealed is not None
            item = Issued(effect, sealed.envelope, sealed.now, sealed.event, sealed.local,
                          sealed.remote, sealed.audit_detail)
            results += await store.complete_effects([item])
        assert results == [True, False]
        assert _count(tmp_path / "n.sqlite3",
                      "SELECT COUNT(*) FROM envelopes WHERE kind = 'evidence'") == 1
    finally:
        await store.close()


async def test_request_due_time_is_written_with_the_acceptance(tmp_path: Path) -> None:
    """A request's Directive 2023/977 due time is in the accepting transaction."""
    path = tmp_path / "n.sqlite3"
    store = await _open(path)
    try:
        env = seal_from(ALICE, [BOB], kind=Kind.REQUEST, urgency=Urgency.URGENT_DIRECT)
        await _accept_at_origin(store, env, [])
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT officer, role, due FROM requests").fetchall() == [
            (ALICE.id, "outgoing", env.header.due)]


async def test_a_local_addressee_of_a_request_gets_its_due_time(tmp_path: Path) -> None:
    """A request to a colleague on the requester's own node: both sides tracked, in the
    accepting transaction (found missing by the chaos soak's effect accounting)."""
    path = tmp_path / "n.sqlite3"
    store = await _open(path)
    try:
        env = seal_from(ALICE, [LOCAL, BOB], kind=Kind.REQUEST,
                        urgency=Urgency.URGENT_DIRECT)
        await _accept_at_origin(store, env, [LOCAL.id])
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert sorted(db.execute("SELECT officer, role, due FROM requests").fetchall()) == [
            (ALICE.id, "outgoing", env.header.due), (LOCAL.id, "incoming", env.header.due)]


async def test_expiry_and_refusal_owe_their_notices_in_the_same_write(tmp_path: Path) -> None:
    """A hop that expires, or that its peer refuses for good, owes its sender a
    non-delivery notice recorded by the very write that ends the hop."""
    path = tmp_path / "n.sqlite3"
    store = await _open(path)
    try:
        expiring = seal_from(ALICE, [BOB], expires=NOW + HOUR_MS)
        refused = seal_from(ALICE, [BOB], now=NOW + 1)
        for env in (expiring, refused):
            await store.accept(env, now=NOW, actor=ALICE.id, event="envelope.accepted",
                               local_recipients=[], remote_nodes=["be"],
                               audit_detail=detail())
        await store.finish_hops("be", now=NOW, delivered=[],
                                refused=[(refused.id, "policy.share_with")],
                                details={refused.id: "not shared with be"})
        assert [e for e, *_ in await store.expire_due(NOW + 2 * HOUR_MS)] == [expiring.id]
        # Ending a hop again owes nothing again.
        await store.finish_hops("be", now=NOW, delivered=[],
                                refused=[(refused.id, "policy.share_with")])
        assert await store.expire_due(NOW + 3 * HOUR_MS) == []
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT kind, envelope_id FROM effects ORDER BY id").fetchall()
    assert rows == [("notice", refused.id), ("notice", expiring.id)]


async def test_a_failing_effect_is_kept_audited_and_blocks_no_other(tmp_path: Path) -> None:
    """An effect that cannot be issued (bad arguments) is retried with backoff and
    audited as ``effect.failed``; one no recipient can receive is removed with an audit
    entry; the good one behind them is issued in the same pass."""
    from liaison_net.store.effect_store import add_effects

    path = tmp_path / "n.sqlite3"
    store = await _open(path)
    clock = ManualClock(NOW)
    try:
        await _enrol(store, ALICE)
        ref = seal_from(ALICE, [BOB]).id
        bad = Effect("notice", ref, {"label": "x"})  # no recipients, content, precedence
        nobody = notice("non-delivery", recipients=["be/unknown"], ref=ref, content={})
        good = notice("non-delivery", recipients=[ALICE.id], ref=ref, content={})

        async def op(txn: object) -> None:
            await add_effects(txn, [bad, nobody, good], NOW)  # type: ignore[arg-type]

        await store.db.write(op)
        drain = _drain(store, clock)
        assert await drain.drain_once() == 3
        [left] = await store.effects.due(NOW + 10 * HOUR_MS, 10)
        assert (left.attempts, await store.effects.due(NOW, 10)) == (1, [])
        assert await drain.drain_once() == 0  # backing off
        clock.advance(10 * HOUR_MS)
        assert await drain.drain_once() == 1  # retried, fails again, still kept
        assert (await store.effects.due(NOW + 20 * HOUR_MS, 10))[0].attempts == 2
    finally:
        await store.close()
    assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = 'effect.failed'") == 2
    assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = 'effect.no_recipient'") == 1
    assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = 'notice.issued'") == 1


async def test_signal_and_request_notices_are_owed_by_their_decisions(tmp_path: Path) -> None:
    """A received signal matching one of ours owes a match notice from its acceptance; a
    desk's first acknowledgement and each escalation (signal, request) owe theirs from
    their own write; a second acknowledgement or escalation owes nothing."""
    from liaison_net.core.signals import Pseudonym, Severity, SignalAnnex

    path = tmp_path / "n.sqlite3"
    store = await _open(path)
    desk = Officer("nl/desk")
    try:
        same = (Pseudonym(b"k" * 16, b"p" * 32),)
        ours = seal_from(ALICE, [BOB], kind=Kind.SIGNAL,
                         signal=SignalAnnex(Severity.HIGH, same))
        theirs = seal_from(BOB, [desk], kind=Kind.SIGNAL, now=NOW + 1,
                           signal=SignalAnnex(Severity.HIGH, same))
        await store.accept(ours, now=NOW, actor=ALICE.id, event="envelope.accepted",
                           local_recipients=[], remote_nodes=["be"], audit_detail=detail())
        outcome = await store.accept(
            theirs, now=NOW, actor="be", event="envelope.delivered_to_inbox",
            local_recipients=[desk.id], remote_nodes=[], audit_detail=detail(),
            signal_deadline=NOW + HOUR_MS, received=True)
        assert outcome.matches == 1

        def ack(sender: str) -> Effect:
            return notice("signal-ack", recipients=[sender], ref=theirs.id, content={})

        escalation = notice("signal-escalation", recipients=[BOB.id], ref=theirs.id,
                            content={})
        for _ in range(2):
            await store.signals.acknowledge(theirs.id, desk.id, now=NOW, notice=ack)
            await store.signals.mark_escalated(theirs.id, now=NOW, notice=escalation)
        request = seal_from(BOB, [desk], kind=Kind.REQUEST, urgency=Urgency.URGENT_DIRECT,
                            now=NOW + 2)
        await store.accept(request, now=NOW, actor="be", event="envelope.delivered_to_inbox",
                           local_recipients=[desk.id], remote_nodes=[],
                           audit_detail=detail(), received=True, track_request=True)
        for _ in range(2):
            await store.requests.mark_escalated(
                request.id, desk.id, now=NOW,
                notice=notice("request-escalation", recipients=[desk.id], ref=request.id,
                              content={}))
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        labels = [codec.unpack(bytes(r[0]), what="args", max_bytes=4096)["label"]
                  for r in db.execute("SELECT args FROM effects ORDER BY id")]
    assert labels == ["signal-match", "signal-ack", "signal-escalation", "request-escalation"]


async def test_one_effect_the_store_refuses_does_not_hold_back_its_batch(
        tmp_path: Path) -> None:
    """The batch is stored in one write; when the database refuses one of its envelopes
    (here a real SQLite trigger), the drain stores the others alone and keeps the refused
    one, audited as ``effect.failed``."""
    path = tmp_path / "n.sqlite3"
    store = await _open(path)
    clock = ManualClock(NOW)
    refused, fine = seal_from(ALICE, [BOB]).id, seal_from(ALICE, [BOB], now=NOW + 1).id
    try:
        await _enrol(store, ALICE)

        async def op(txn: object) -> None:
            from liaison_net.store.effect_store import add_effects
            await add_effects(txn, [  # type: ignore[arg-type]
                notice("non-delivery", recipients=[ALICE.id], ref=ref, content={})
                for ref in (refused, fine)], NOW)

        await store.db.write(op)
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON envelopes WHEN NEW.ref = "
                       f"X'{refused.hex()}' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        drain = _drain(store, clock)
        assert await drain.drain_once() == 2
        [left] = await store.effects.due(NOW + 10 * HOUR_MS, 10)
        assert (left.ref, left.attempts) == (refused, 1)
    finally:
        await store.close()
    assert _count(path, "SELECT COUNT(*) FROM envelopes WHERE kind = 'notice'") == 1
    assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = 'effect.failed'") == 1


async def test_the_pending_gauge_is_counted_at_most_once_a_second(tmp_path: Path) -> None:
    """The gauge is a COUNT(*) of the effects table: after a pass, read again only once a
    second has passed (at a catch-up a pass runs per peer transaction), and then right."""
    store = await _open(tmp_path / "n.sqlite3")
    try:
        await _enrol(store, ALICE)
        clock = ManualClock(NOW + 1000)
        drain = _drain(store, clock)
        counted: list[int] = []
        pending = store.effects.pending

        async def counting() -> int:
            counted.append(await pending())
            return counted[-1]

        store.effects.pending = counting  # type: ignore[method-assign]
        for i in range(3):
            assert not await _accept_at_origin(store, seal_from(ALICE, [BOB], now=NOW + i), [])
            await drain._pass()
        assert counted == [0]  # the first pass's count, none for the two within a second
        assert not await _accept_at_origin(store, seal_from(ALICE, [BOB], now=NOW + 5), [])
        clock.advance(PENDING_EVERY_MS)
        await drain._pass()
        assert counted == [0, 0]
        assert drain.metrics.registry.get_sample_value("liaison_effects_pending") == 0
    finally:
        await store.close()


class _PassesCounted(EffectDrain):
    """The drain, counting the passes it starts (what the tests below watch)."""

    passes = 0

    async def _pass(self) -> None:
        self.passes += 1
        await super()._pass()


@contextlib.asynccontextmanager
async def _running_drain(path: Path, config: EffectsConfig) -> AsyncIterator[_PassesCounted]:
    """A counting drain running on a real store, its first pass (at start) done; stopped
    and the store closed after."""
    store = await _open(path)
    drain = _PassesCounted(node_id="nl", store=store, notifier=_drain(store, ManualClock(NOW))
                           .notifier, config=config, metrics=NodeMetrics(),
                           clock=ManualClock(NOW))
    task = asyncio.create_task(drain.run())
    try:
        await until(lambda: drain.passes == 1, "the first pass, at start")
        yield drain
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def test_a_wake_lets_what_the_commit_readied_run_before_the_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Woken by a commit, the drain does not start its pass (its seal is a millisecond of
    the event loop) before the tasks that commit readied (the sender's POST, an answer)
    had their turns: ten turns of another task go first. Order, not time: the wait is
    made long here (0.5 s) so that no loaded machine can stall those ten turns past it."""
    monkeypatch.setattr(effects_service, "AFTER_WAKE_S", 0.5)
    async with _running_drain(tmp_path / "n.sqlite3", EffectsConfig()) as drain:
        drain.wake.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert drain.passes == 1
        await until(lambda: drain.passes == 2, "the pass after the wake")


async def test_a_wake_soon_after_a_pass_waits_for_the_pass_gap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1,000 envelopes/s a commit wakes the drain every few ms; a pass starts no sooner
    than ``PASS_GAP_S`` after the last one began, so one pass covers many commits' effects.
    Order, not time: with no wait after a wake (``AFTER_WAKE_S`` 0) and a gap of an hour,
    fifty turns of another task pass and the drain has not started its second pass; the
    poll (``poll_s``) still runs one, the gap does not hold it back."""
    monkeypatch.setattr(effects_service, "AFTER_WAKE_S", 0.0)
    monkeypatch.setattr(effects_service, "PASS_GAP_S", 3600.0)
    async with _running_drain(tmp_path / "n.sqlite3", EffectsConfig(poll_s=0.2)) as drain:
        drain.wake.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert drain.passes == 1
        await until(lambda: drain.passes == 2, "the pass the poll starts")
