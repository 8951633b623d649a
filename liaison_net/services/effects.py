"""The effects drain: issues what decisions owe (``core/effects.py``), exactly once.

Every decision that obliges the node to write an envelope of its own (an acceptance's
delivery evidence, a disclosure receipt, a non-delivery notice after a refusal or an
expiry, a signal's acknowledgement, match or escalation notice, a request's escalation)
records an effect row in its own transaction. This loop, one per node under the
supervisor, takes due effects oldest first and for each one:

1. seals the envelope it describes (the node's key, the recipients' cards; nothing stored);
2. in ONE write (for the whole batch), stores that envelope as any accepted envelope
   (envelope, inbox or hops, ``evidence.issued``/``notice.issued`` audit entry) AND deletes
   the effect row: an effect already deleted stores nothing;
3. after that commit, wakes the peers it goes to (the live inbox is woken by the store).

A crash between 1 and 2 leaves the row: it is sealed again after the restart (the first
seal was never stored). An effect that fails (a bug, bad arguments) is kept, audited as
``effect.failed``, counted, and retried with backoff; it never blocks the others. One no
recipient can receive (no card here) is deleted with an audit entry saying so, not
silently. Storage trouble ends the pass; the next wake or poll tries again.

It runs after each commit that wrote effects (``Database.on_effects``), ``[effects]
linger_s`` later (0 by default; at least ``AFTER_WAKE_S``, 5 ms, so that the envelope's own
next steps go first; and no sooner than ``PASS_GAP_S``, 50 ms, after the last pass began, so
that at 1,000/s one pass covers many commits), and at least every ``poll_s``. At 20
envelopes/s every envelope's evidence is a pass of its own (a seal, and at the destination a
federation transaction back and its commits); a pass's write for a few envelopes rides on
the next commit the node makes for another reason, at most ``RIDE_S`` later, instead of an
fsync of its own (``Database.write(rides=True)``, durable when it returns). A linger of 0.25
s lets one pass cover a quarter second of envelopes and halves the drain's CPU, but its
bursts land on envelopes that arrive during them and lengthen the latency tail
(docs/performance.md), so it is off unless a node is short of CPU. Nothing waits on it but
the evidence and notices themselves, which stay owed in their rows meanwhile (a crash in
between issues them after the restart).
``drain_delay_s`` holds each pass back, for tests that kill a node between a decision and
its drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog

from liaison_net import timeline
from liaison_net.clock import Clock
from liaison_net.config import EffectsConfig
from liaison_net.core import codec
from liaison_net.core.delivery import BackoffPolicy
from liaison_net.core.effects import EVIDENCE, NOTICE, unpack_args
from liaison_net.core.envelope import Kind, Precedence
from liaison_net.core.evidence import (
    EVIDENCE_RETENTION_MS,
    Step,
    decode_body,
    sign_statement,
)
from liaison_net.core.evidence_batch import Leaf, cut, sign_batch
from liaison_net.core.ids import id_to_text, node_principal
from liaison_net.errors import LiaisonError, Malformed, Unavailable
from liaison_net.metrics import NodeMetrics
from liaison_net.services.notices import Notifier, Sealed
from liaison_net.store.effect_store import Issued, PendingEffect
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.effects")

#: The steps a node attests that it batches: "accepted" at the origin, "relayed" at the
#: destination (and at the origin for its own officers). A relayed batch travels back to
#: the sender's node with its covered ids beside it (federation ``covers``), so that node
#: finds it for each of them as this one does.
BATCHED_STEPS = frozenset({Step.ACCEPTED, Step.RELAYED})
#: The pending gauge (``liaison_effects_pending``) is a COUNT(*) of the effects table: read
#: after a pass at most this often (ms), not after every pass (at a catch-up, a pass per
#: peer transaction; the count a scan of every row owed meanwhile). A gauge, never a check.
PENDING_EVERY_MS = 1000
#: After a commit's wake, the pass starts this much later (s), so the steps the commit
#: readied run first on the event loop: at the origin, the sender posts the envelope it was
#: just handed; at the destination, the answer and the live inbox go out. Started at once,
#: the pass's seal ran before the sender's POST for a third of a light load's envelopes
#: (+1.4 ms at the median, +3-5 ms at p95: docs/performance.md, lane lightp16). Bounded,
#: and far below ``poll_s``; what the pass issues waits in its rows meanwhile.
AFTER_WAKE_S = 0.005
#: After a wake, a pass starts no sooner than this long (s) after the last one started. At
#: a light load (20/s: a commit every 50 ms) that adds nothing; at 1,000/s, where a commit
#: wakes the drain every few ms, a pass every ~18 ms cost each envelope its share of a
#: pass's fixed work (a due read, a batch signature and seal, a write; at the destination
#: a transaction back with the evidence, and the origin's request, verification and write
#: to take it): 458-563 passes a 10 s paced run at the origin, 480 at the destination. What
#: waits meanwhile is owed in its rows (committed with the decision), as with ``linger_s``.
PASS_GAP_S = 0.05


class EffectDrain:
    def __init__(self, *, node_id: str, store: NodeStore, notifier: Notifier,
                 config: EffectsConfig, metrics: NodeMetrics, clock: Clock) -> None:
        self.node_id = node_id
        self.store = store
        self.notifier = notifier
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.wake = asyncio.Event()
        self._backoff = BackoffPolicy(initial_s=1.0, maximum_s=config.retry_max_s)
        self._counted_at = -PENDING_EVERY_MS  # when the pending gauge was last read (ms)

    async def run(self) -> None:
        """Drain ``linger_s`` (at least ``AFTER_WAKE_S``) after every wake, no sooner than
        ``PASS_GAP_S`` after the last pass began, and at least every ``poll_s``, until
        cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self._pass()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_s):
                    await self.wake.wait()
                    await asyncio.sleep(max(AFTER_WAKE_S,
                                            min(self.config.linger_s, self.config.poll_s),
                                            started + PASS_GAP_S - loop.time()))

    async def _pass(self) -> None:
        self.wake.clear()
        if self.config.drain_delay_s:
            await asyncio.sleep(self.config.drain_delay_s)
        try:
            while await self.drain_once() >= self.config.batch:
                pass
            now = self.clock.now_ms()
            if now - self._counted_at >= PENDING_EVERY_MS:
                self._counted_at = now
                self.metrics.effects_pending.set(await self.store.effects.pending())
        except Unavailable as exc:  # storage trouble: the rows wait, the next pass retries
            log.warning("effects.drain_failed", code=exc.code, reason=exc.detail[:200])

    async def drain_once(self) -> int:
        """Issue every effect due now (one batch, stored in one write); the number taken."""
        due = await self.store.effects.due(self.clock.now_ms(), self.config.batch)
        if due:
            timeline.mark("e.due")
        ready: list[tuple[Issued, Sealed]] = []
        batches, singles = self._batches(due)
        for group in batches:
            ready.extend(await self._seal_batch(group))
        for effect in singles:
            try:
                sealed = await self._seal(effect)
            except Unavailable:
                raise
            except Exception as exc:  # one effect's failure (a bug too) is kept, retried alone
                await self._failed(effect, exc)
                continue
            if sealed is None:
                await self.store.effects.discharged(
                    effect, now=self.clock.now_ms(), event="effect.no_recipient",
                    reason="no recipient of this envelope has a usable card here")
                continue
            ready.append((Issued(effect, sealed.envelope, sealed.now, sealed.event,
                                 sealed.local, sealed.remote, sealed.audit_detail), sealed))
        if not ready:
            return len(due)
        timeline.mark("e.sealed")
        try:
            done = await self.store.complete_effects([item for item, _ in ready])
        except Unavailable:
            raise
        except LiaisonError:
            # One of them was refused, so the write stored none: each alone, so that one
            # cannot hold the others back.
            done = [await self._complete_alone(item) for item, _ in ready]
        for ok, (_, sealed) in zip(done, ready, strict=True):
            if ok:
                self.notifier.issued(sealed)
        timeline.mark("e.stored")
        return len(due)

    async def _complete_alone(self, item: Issued) -> bool:
        try:
            # Not a rider: these writes are awaited one after another, and riding, each
            # would wait up to ``RIDE_S`` for a plain write on a quiet node (review16e).
            return (await self.store.complete_effects([item], may_ride=False))[0]
        except Unavailable:
            raise
        except LiaisonError as exc:
            for effect in (item.effect, *item.also):
                await self._failed(effect, exc)
            return False

    def _batches(self, due: list[PendingEffect]
                 ) -> tuple[list[list[tuple[PendingEffect, Leaf]]], list[PendingEffect]]:
        """This node's "accepted" and "relayed" statements grouped per sender and step, each
        group within one batch's bounds (``evidence_batch.cut``) and naming each envelope
        once (a second recipient's "relayed" on this node goes the single way); a group of
        one, and everything else, goes the single way (one statement, one envelope). Each
        statement's stored bytes are its leaf (``Leaf.read``): none is encoded again."""
        groups: dict[tuple[str, Step], list[tuple[PendingEffect, Leaf]]] = {}
        named: dict[tuple[str, Step], set[bytes]] = {}
        singles: list[PendingEffect] = []
        me = node_principal(self.node_id)
        for effect in due:
            leaf: Leaf | None = None
            try:
                args = unpack_args(effect.kind, effect.args)
                if effect.kind == EVIDENCE and isinstance(args["statement"], bytes):
                    leaf = Leaf.read(args["statement"])
                sender = str(args.get("sender"))
            except (LiaisonError, KeyError):
                leaf = None
            if leaf is None:
                singles.append(effect)
                continue
            statement = leaf.statement
            if (statement.step not in BATCHED_STEPS or statement.by != me
                    or statement.envelope in named.get((sender, statement.step), ())):
                singles.append(effect)
                continue
            groups.setdefault((sender, statement.step), []).append((effect, leaf))
            named.setdefault((sender, statement.step), set()).add(statement.envelope)
        batches: list[list[tuple[PendingEffect, Leaf]]] = []
        for group in groups.values():
            if len(group) == 1:
                singles.append(group[0][0])
                continue
            batches.extend(group[a:b] for a, b in cut([leaf for _, leaf in group]))
        singles.sort(key=lambda e: e.id)
        return batches, singles

    async def _seal_batch(self, group: list[tuple[PendingEffect, Leaf]]
                          ) -> list[tuple[Issued, Sealed]]:
        """One evidence envelope for a group: one signature (a Merkle root over the
        statements, all of one step), sealed once for their sender."""
        effects = [e for e, _ in group]
        sender = str(unpack_args(EVIDENCE, effects[0].args)["sender"])
        leaves = [leaf for _, leaf in group]
        statements = [leaf.statement for leaf in leaves]
        try:
            sealed = await self.notifier.seal(
                Kind.EVIDENCE, label=statements[0].step.value, recipients=[sender],
                plaintext=sign_batch(leaves, self.notifier.signing_key(),
                                     at=self.clock.now_ms()),
                ref=statements[0].envelope, precedence=Precedence.ROUTINE,
                retention_ms=EVIDENCE_RETENTION_MS)
        except Unavailable:
            raise
        except Exception as exc:  # the group's failure is each effect's, retried alone
            for effect in effects:
                await self._failed(effect, exc)
            return []
        if sealed is None:
            for effect in effects:
                await self.store.effects.discharged(
                    effect, now=self.clock.now_ms(), event="effect.no_recipient",
                    reason="no recipient of this envelope has a usable card here")
            return []
        return [(Issued(effects[0], sealed.envelope, sealed.now, sealed.event, sealed.local,
                        sealed.remote, sealed.audit_detail, also=tuple(effects[1:]),
                        covers=tuple(s.envelope for s in statements)), sealed)]

    async def _seal(self, effect: PendingEffect) -> Sealed | None:
        """The envelope ``effect`` owes, sealed now (nothing stored)."""
        args = unpack_args(effect.kind, effect.args)
        if effect.kind == NOTICE:
            label, recipients = str(args["label"]), [str(r) for r in args["recipients"]]
            return await self.notifier.seal(
                Kind.NOTICE, label=label, recipients=recipients,
                plaintext=codec.pack({"v": 1, "type": label, **args["content"]}),
                ref=effect.ref, precedence=Precedence(args["precedence"]))
        assert effect.kind == EVIDENCE
        statement = decode_body(args["statement"])
        if statement.by != node_principal(self.node_id):
            raise Malformed(f"a {statement.step.value} statement by {statement.by} is not "
                            "this node's to sign")
        return await self.notifier.seal(
            Kind.EVIDENCE, label=statement.step.value, recipients=[str(args["sender"])],
            plaintext=sign_statement(statement, self.notifier.signing_key()),
            ref=statement.envelope, precedence=Precedence.ROUTINE,
            retention_ms=EVIDENCE_RETENTION_MS)

    async def _failed(self, effect: PendingEffect, exc: Exception) -> None:
        if isinstance(exc, LiaisonError):
            code, reason = exc.code, exc.detail
        else:
            log.exception("effect.bug", effect=effect.id)
            code, reason = "internal", type(exc).__name__
        now = self.clock.now_ms()
        delay = self._backoff.delay(effect.attempts + 1, random.random())
        self.metrics.effects_failed.inc()
        log.warning("effect.failed", effect=effect.id, kind=effect.kind, code=code,
                    attempts=effect.attempts + 1, ref=id_to_text(effect.ref),
                    retry_in_s=round(delay, 1), reason=reason[:200])
        await self.store.effects.failed(effect, now=now, next_attempt=now + int(delay * 1000),
                                        code=code, reason=reason)
