"""Composition root: a node config in, a running national node out.

One process serves two listeners: the federation API to peers (mutual TLS 1.3, peers'
certificates must chain to the network CA) and the officer API (TLS, officers log in by
signature). Background tasks, all owned by one TaskGroup: a sender per peer, the expiry
sweep that turns undeliverable envelopes into owed non-delivery notices, the effects drain
that issues what decisions owe (evidence, notices, receipts), and the retention sweep that
purges content at its tag's ``retain_until``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import signal
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from liaison_net import timeline
from liaison_net.admin_api import routes as admin_routes
from liaison_net.clock import Clock
from liaison_net.config import NodeConfig
from liaison_net.core import crypto, key_change, tagflow
from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect, notice
from liaison_net.core.envelope import Envelope
from liaison_net.core.identity import EnrolmentRequest, issue_card, renewal, verify_card
from liaison_net.core.ids import node_principal
from liaison_net.core.limits import DAY_MS
from liaison_net.core.rotation import Revocation, Subject
from liaison_net.errors import ConfigError, LiaisonError, PortInUse, Unavailable
from liaison_net.federation.checkpoints import CheckpointPublisher, CheckpointRoute
from liaison_net.federation.lease import SenderLease, worker_id, worker_prefix
from liaison_net.federation.sender import PeerSender
from liaison_net.federation.server import FederationServer
from liaison_net.federation.tls import client_context, server_context
from liaison_net.heap import settle_heap
from liaison_net.metrics import NodeMetrics
from liaison_net.officer_api.inbox_stream import InboxTail
from liaison_net.officer_api.routes import ClientApi
from liaison_net.pki import certificates, key_change_files
from liaison_net.pki.pseudonym_key_files import WatchedKeyRing
from liaison_net.services.admin_desk import AdminDesk
from liaison_net.services.checkpoints import AuditCheckpoints
from liaison_net.services.effects import EffectDrain
from liaison_net.services.holds import HoldDesk
from liaison_net.services.intake import Intake, Keys
from liaison_net.services.key_changes import KeyChangeDesk
from liaison_net.services.key_watch import KeyWatcher
from liaison_net.services.notices import Notifier
from liaison_net.services.request_desk import RequestDesk
from liaison_net.services.signal_desk import SignalDesk
from liaison_net.services.witness import Witness
from liaison_net.services.worker_sync import KeyEpochWatch
from liaison_net.store.envelope_store import QueuedHop
from liaison_net.store.node_store import NodeStore
from liaison_net.supervisor import Supervisor
from liaison_net.workers.verify_pool import VerifyPool

log = structlog.get_logger("liaison.node")

NOTICE_TTL_MS = 30 * DAY_MS
NOTICE_RETENTION_MS = 90 * DAY_MS
PURGE_BATCH = 500  # envelopes purged per transaction by the retention sweep


class Node:
    def __init__(self, config: NodeConfig, clock: Clock | None = None) -> None:
        self.config = config
        # The node's one clock, passed to everything that reads time (drill offset in).
        self.clock = clock or Clock(config.clock_offset_ms)
        self.metrics = NodeMetrics()
        self.store = NodeStore.for_config(config, clock=self.clock)
        # Storage faults: refused writes counted, "full" shown (also on /healthz).
        self.store.db.on_storage_full = self.metrics.storage_refused.inc
        self.metrics.storage_full.set_function(lambda: float(self.store.db.storage.full))
        paths = certificates.NodePaths.under(config.cert_dir, config.id)
        self.paths = paths
        self.ca_cert = certificates.load_ca_certificate(paths.ca_cert)
        self.signing_cert_pem = _read_file(paths.signing_cert, "node signing certificate")
        self.signing_key = crypto.signing_key_from_seed(
            _read_file(paths.signing_key, "node signing key"))
        self.senders: dict[str, PeerSender] = {}
        self.leases: dict[str, SenderLease] = {}
        self.inbox_tail: InboxTail | None = None  # made with the officer API
        # This process, as a holder of leases (federation/lease.py).
        self.worker_id = worker_id(str(config.federation))
        self.keys = Keys(own=self.signing_key, nodes={config.id: self.signing_key.public})
        self.notifier = Notifier(node_id=config.id, store=self.store,
                                 signing_key=lambda: self.signing_key, wake=self._wake,
                                 clock=self.clock)
        self.desk = SignalDesk(node_id=config.id, store=self.store,
                               config=config.signals, metrics=self.metrics, clock=self.clock)
        self.request_desk = RequestDesk(node_id=config.id, store=self.store,
                                        config=config.requests, clock=self.clock)
        # Issues what decisions owe (evidence, notices, receipts), woken by each commit
        # that recorded some (services/effects.py).
        self.effects = EffectDrain(node_id=config.id, store=self.store, notifier=self.notifier,
                                   config=config.effects, metrics=self.metrics,
                                   clock=self.clock)
        self.store.db.on_effects = self.effects.wake.set
        # [workers] verify: envelope verification in processes beside this one (workers/).
        # Only bulk batches go to them; the workers start at the first one.
        self.verify_pool = VerifyPool(
            slots=config.verify_workers, limits=config.limits,
            answer_timeout_s=config.verify_timeout_s,
            counted=lambda where, n: self.metrics.verified.labels(where=where).inc(n))
        verifier = self.verify_pool.verify_many if config.verify_workers else None
        # Four-eyes release: what waits for a second officer (services/holds.py).
        self.holds = HoldDesk(node_id=config.id, store=self.store, config=config.four_eyes,
                              clock=self.clock, wake=self._wake, limits=config.limits)
        # An officer's envelope reaches its peers' senders at its commit, in memory.
        self.store.on_queued = self._hand_over
        self.intake = Intake(node_id=config.id, peers={p.id for p in config.peers},
                             store=self.store, keys=self.keys, limits=config.limits,
                             metrics=self.metrics, desk=self.desk,
                             on_disclosure=self._disclosure_receipt,
                             requests=self.request_desk,
                             witness=Witness(node_id=config.id),
                             verifier=verifier,
                             holds=self.holds)
        self._pseudonym_ring = WatchedKeyRing(paths.dir)
        # Peers' new node keys only through co-signed key changes; ours travel with our
        # certificate (``_own_chain``: the applied ones in ``key-changes/``).
        self.key_changes = KeyChangeDesk(node_id=config.id,
                                         peers=frozenset(p.id for p in config.peers),
                                         store=self.store, keys=self.keys,
                                         threshold=config.cosign_threshold,
                                         grace_ms=config.key_grace_s * 1000, clock=self.clock)
        self._chain: list[tuple[int, bytes]] = []
        self._chain_revocations: set[int] = set()  # serials of ours stored as revocations
        # Enrolment and revocation, asked by `liaison admin` over the admin socket.
        self.admin = AdminDesk(node_id=config.id, store=self.store,
                               signing_key=lambda: self.signing_key,
                               peers=[p.id for p in config.peers],
                               card_validity_days=config.card_validity_days,
                               clock=self.clock, wake=self._wake_all, admin=config.admin)
        # The audit log's checkpoints, signed here and witnessed by the peers (issue 18).
        self.checkpoints = AuditCheckpoints(
            node_id=config.id, store=self.store, keys=self.keys, config=config.audit,
            peers=[p.id for p in config.peers], metrics=self.metrics, limits=config.limits,
            clock=self.clock)
        self.supervisor = Supervisor(policy=config.supervision, audit=self._audit_loop,
                                     metrics=self.metrics)
        self._runners: list[web.AppRunner] = []
        self._federation: FederationServer | None = None
        self._stopping = asyncio.Event()
        self._cert_pushed: dict[str, tuple[bytes, int]] = {}  # certificate, chain serial
        self._tls_contexts = [server_context(paths.dir, require_client_cert=True),
                              server_context(paths.dir, require_client_cert=False),
                              client_context(paths.dir)]

    async def _audit_loop(self, event: str, fields: dict[str, object]) -> None:
        await self.store.audit(now=self.clock.now_ms(), event=event, actor=self.config.id,
                               audit_detail=detail(**fields))

    def _wake(self, peer: str) -> None:
        sender = self.senders.get(peer)
        if sender is not None:
            sender.wake.set()

    def _hand_over(self, hops: list[QueuedHop]) -> None:
        """At the commit of an officer's envelope: its hops to their peers' senders, in
        memory (``store.on_queued``; ``federation/inflight.py``)."""
        for hop in hops:
            sender = self.senders.get(hop.node)
            if sender is not None:
                timeline.mark("o.handed", hop.envelope_id)
                sender.offer(hop)

    def _wake_all(self) -> None:
        for sender in self.senders.values():
            sender.wake.set()

    def _peer_called_in(self, peer: str) -> None:
        sender = self.senders.get(peer)
        if sender is not None:
            sender.peer_called_in()

    def _push_state(self) -> Hashable | None:
        """Moves whenever a card, key or revocation is written or our certificate changes
        (``PeerSender._pushes`` skips its reads while it stands still)."""
        stamp = self.store.db.key_cache.stamp()
        return None if stamp is None else (stamp, self.signing_cert_pem, self._chain_serial())

    def _chain_serial(self) -> int:
        return self._chain[-1][0] if self._chain else 0

    async def _directory_push(self, peer: str) -> tuple[int, dict[str, Any]] | None:
        """New cards of this node's officers, and this node's signing certificate with its
        key changes whenever the peer has not had the current ones from us since we started
        (after a rotation), or the link to it is failing."""
        cursor = await self.store.directory_cursor(peer)
        cards = await self.store.cards_since(cursor, node=self.config.id, limit=200)
        cert = self.signing_cert_pem
        pushed = (cert, self._chain_serial())
        # While the link is failing, the last push may not have arrived (the peer was down,
        # or refused it): send the certificate and key changes again until a pass succeeds.
        sender = self.senders.get(peer)
        failing = sender is not None and sender.link.attempts > 0
        if not cards and not failing and self._cert_pushed.get(peer) == pushed:
            return None
        self._cert_pushed[peer] = pushed
        return (cards[-1][0] if cards else cursor), {
            "origin": self.config.id, "node_cert": cert, "cards": [raw for _, raw in cards],
            "key_changes": [raw for _, raw in self._chain]}

    def _own_chain(self) -> list[tuple[int, bytes]]:
        """Our applied key changes as far as they are in effect: up to the one that
        introduced the key we sign with, and the revocations after it (a change whose key
        is not installed yet waits, or peers would refuse our current certificate)."""
        entries = key_change_files.chain(self.paths.dir, latest=key_change.MAX_CHAIN)
        decoded = []
        for serial, raw in entries:
            try:
                decoded.append((serial, raw, key_change.decode(raw).change))
            except LiaisonError:
                break
        own = self.signing_key.key_id
        last = max((i for i, (_, _, c) in enumerate(decoded) if c.new_key_id == own),
                   default=-1)
        cut = next((i for i in range(last + 1, len(decoded))
                    if decoded[i][2].kind is not key_change.Kind.REVOKE), len(decoded))
        return [(serial, raw) for serial, raw, _ in decoded[:cut]]

    async def _chain_loop(self) -> None:
        """Follow ``key-changes/``: `liaison admin keys apply` adds to it."""
        while True:
            await self._sync_chain()
            await asyncio.sleep(1.0)

    async def _sync_chain(self) -> None:
        self._chain = self._own_chain()
        for serial, raw in self._chain:
            if serial in self._chain_revocations:
                continue
            change = key_change.decode(raw).change
            if change.kind is key_change.Kind.REVOKE:
                await self.store.keys.add_revocation(
                    Revocation(Subject.NODE, self.config.id, change.old_key_id, change.reason,
                               change.serial, change.issued, self.config.id),
                    raw, now=self.clock.now_ms(), forward_to=[], source=self.config.id)
            self._chain_revocations.add(serial)

    def _issue_card(self, request: EnrolmentRequest, version: int) -> bytes:
        return issue_card(request, node_id=self.config.id, node_key=self.signing_key,
                          version=version, now=self.clock.now_ms(),
                          valid_for_ms=self.config.card_validity_days * DAY_MS)

    async def _new_signing_key(self, key: crypto.SigningKeyPair, cert_pem: bytes) -> None:
        """Switch to a CA-certified new node key, once a key change co-signed by the other
        national nodes introduces it; peers accept the old one for the grace (none after a
        replacement: the old key is lost)."""
        old = self.signing_key
        now = self.clock.now_ms()
        change = self._change_introducing(key, old)
        if change is None:
            log.error("key.change_refused", key_id=key.key_id.hex(),
                      reason="no applied key change co-signed by the other national nodes "
                             "introduces the new signing key: `liaison admin keys apply`")
            await self.store.audit(now=now, event="key.change_refused", actor=self.config.id,
                                   audit_detail=detail(node=self.config.id, code="cosign_threshold",
                                                       new=key.key_id.hex()))
            return
        grace_ms = (self.config.key_grace_s * 1000
                    if change.kind is key_change.Kind.ROTATE else 0)
        await self.store.keys.supersede_node_key(
            node_principal(self.config.id), old.public, now=now,
            grace_ms=grace_ms, actor=self.config.id,
            cert=self.signing_cert_pem)
        await self.store.audit(now=now, event="key.rotated" if grace_ms else "key.replaced",
                               actor=self.config.id,
                               audit_detail=detail(kind="node-signing", serial=change.serial,
                                                   old=old.key_id.hex(), new=key.key_id.hex()))
        self.signing_key = key
        self.signing_cert_pem = cert_pem
        self.keys.own = key
        self.keys.nodes[self.config.id] = key.public
        # Cards are believed under the node key that signed them: re-issue ours under the
        # new key (same officer keys, next version) so clients and peers keep them.
        for officer, *_ in await self.store.directory():
            card = await self.store.officer_card(officer)
            if card is None or card.node != self.config.id:
                continue
            raw = self._issue_card(renewal(card), card.version + 1)
            reissued = verify_card(raw, node_public=key.public, node_id=self.config.id,
                                   now=now)
            await self.store.put_card(reissued, raw, now=now, source=self.config.id)
        for key_id, raw_old in await self.store.previous_cards(now=now):
            try:
                previous = verify_card(raw_old, node_public=old.public, node_id=self.config.id,
                                       now=None)
            except LiaisonError:
                continue  # a peer's officer, or signed by an older key still: leave it
            await self.store.replace_previous_card(
                key_id, self._issue_card(renewal(previous), previous.version))
        self._chain = self._own_chain()  # the change that introduced it goes with it
        for sender in self.senders.values():
            sender.wake.set()  # push the new certificate now
        log.info("key.rotated", kind="node-signing", key_id=key.key_id.hex())

    def _change_introducing(self, key: crypto.SigningKeyPair, old: crypto.SigningKeyPair
                            ) -> key_change.KeyChange | None:
        """The applied change that replaces ``old`` by ``key``, verified as peers will."""
        for _, raw in reversed(key_change_files.chain(self.paths.dir,
                                                      latest=key_change.MAX_CHAIN)):
            try:
                verified = key_change.verify(
                    raw, subject_key=old.public,
                    cosigner_keys=self.key_changes.cosigner_keys(self.config.id),
                    threshold=self.config.cosign_threshold, last_serial=None,
                    expected_node=self.config.id)
            except LiaisonError:
                continue
            if verified.change.new_key_id == key.key_id:
                return verified.change
        return None

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT (or ``stop``)."""
        timeline.start(self.config.id)  # off unless LIAISON_TIMELINE is set (measuring)
        await self.store.open(writer=False)  # the writer runs under the supervisor
        self.keys.nodes.update(await self.store.node_keys())
        self.keys.nodes[self.config.id] = self.signing_key.public
        self._chain = self._own_chain()  # (revocations in it are stored by the loop)
        # Kept-alive connections per peer: one per transaction in flight, one for the slot
        # kept for urgent ones (federation/inflight.py), one for pushes.
        connector = aiohttp.TCPConnector(ssl=self._tls_contexts[2],
                                         limit_per_host=self.config.delivery.in_flight + 2)
        watcher = KeyWatcher(self.paths, self.ca_cert, self._tls_contexts,
                             self._new_signing_key, lambda: self.signing_key.public,
                             clock=self.clock)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await self._start_listeners()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.add_signal_handler(sig, self._stopping.set)
                if self.clock.offset_ms:
                    log.warning("clock.drill_offset", offset_ms=self.clock.offset_ms,
                                reason="this node's clock is shifted for a fault drill "
                                       "([clock] drill_offset_ms or --clock-offset-ms)")
                frozen = settle_heap()  # start-up frozen, fewer young collections (heap.py)
                log.info("node.started", node=self.config.id,
                         federation=str(self.config.federation), client=str(self.config.client),
                         frozen_objects=frozen)
                # Every loop runs under the supervisor (supervisor.py): one that crashes is
                # logged, audited and restarted alone; only shutdown cancels them together.
                sup = self.supervisor
                sup.add("group-commit", self.store.db.run_writer,
                        on_failed=self.store.db.writer_failed)
                for peer in self.config.peers:
                    sender = PeerSender(node_id=self.config.id, peer=peer, store=self.store,
                                        session=session, delivery=self.config.delivery,
                                        metrics=self.metrics,
                                        directory_push=self._directory_push,
                                        clock=self.clock, push_state=self._push_state)
                    self.senders[peer.id] = sender
                    # Only the worker holding the peer's lease sends to it (federation/
                    # lease.py): a node may run as several processes on one database.
                    lease = SenderLease(sender=sender, store=self.store,
                                        holder=self.worker_id,
                                        lease_s=self.config.delivery.lease_s, clock=self.clock,
                                        former_self=worker_prefix(str(self.config.federation)))
                    self.leases[peer.id] = lease
                    sup.add(f"sender-{peer.id}", lease.run)
                sup.add("audit-checkpoints", CheckpointPublisher(
                    service=self.checkpoints, peers=self.config.peers, session=session,
                    request_timeout_s=self.config.delivery.request_timeout_s,
                    tick_s=min(1.0, self.config.audit.checkpoint_seconds),
                    heartbeat_s=self.config.audit.checkpoint_seconds,
                    offers_to=lambda peer: self.leases[peer].held.is_set()).run)
                sup.add("expiry", self._expiry_loop)
                sup.add("effects", self.effects.run)
                sup.add("retention", self._retention_loop)
                sup.add("key-watch", watcher.run)
                sup.add("key-changes", self._chain_loop)
                sup.add("signal-desk", self.desk.run)
                sup.add("request-desk", self.request_desk.run)
                if self.config.four_eyes.enabled:
                    sup.add("four-eyes", self.holds.run)
                for slot in range(self.verify_pool.slots):
                    sup.add(f"verify-worker-{slot}", functools.partial(self.verify_pool.run_slot,
                                                                      slot))
                if self._federation is not None:
                    sup.add("refusal-audit", self._federation.run_reports)
                if self.inbox_tail is not None:
                    sup.add("inbox-tail", self.inbox_tail.run)
                sup.add("key-epoch", KeyEpochWatch(
                    read_epoch=self.store.key_epoch, reload=self._reload_keys,
                    interval_s=self.config.delivery.inbox_poll_s).run)
                async with asyncio.TaskGroup() as tasks:
                    sup.start(tasks)
                    await self._stopping.wait()
                    # Requests in flight finish while the writer still runs; then the rest.
                    await self._stop_listeners()
                    async with asyncio.TaskGroup() as releases:  # another worker sends now
                        for lease in self.leases.values():
                            releases.create_task(lease.release())
                    if self._federation is not None:
                        await self._federation.report_unverified(final=True)
                    raise _Stop
        except* _Stop:
            pass
        finally:
            await self._stop_listeners()
            admin_routes.socket_path(self.config.data_dir).unlink(missing_ok=True)
            await self.store.close()
            db = self.store.db  # what it committed, and why (docs/performance.md, commits16)
            log.info("node.stopped", node=self.config.id, commits=db.commits,
                     rider_commits=db.rider_commits, commits_by=db.commits_by,
                     writes_by=db.writes_by)

    def stop(self) -> None:
        self._stopping.set()

    async def _reload_keys(self) -> None:
        """Another worker of this node changed a key (services/worker_sync.py)."""
        self.store.forget_cached_keys()
        self.keys.nodes.update(await self.store.node_keys())
        self.keys.nodes[self.config.id] = self.signing_key.public

    async def _stop_listeners(self) -> None:
        while self._runners:
            await self._runners.pop().cleanup()

    async def _start_listeners(self) -> None:
        # The administrator's door first (a 0600 unix socket beside the database, see
        # admin_api), so that once the node listens, `liaison admin` writes through it.
        admin_runner = web.AppRunner(admin_routes.AdminApi(self.admin).app(),
                                     access_log=None, handle_signals=False)
        await admin_runner.setup()
        self._runners.append(admin_runner)
        sock = admin_routes.bind(admin_routes.socket_path(self.config.data_dir))
        await web.SockSite(admin_runner, sock, shutdown_timeout=2.0).start()
        limits = self.config.limits
        federation = FederationServer(
            intake=self.intake, ca_cert=self.ca_cert,
            max_body=min(256 * 1024 * 1024,
                         self.config.delivery.batch_size * limits.max_envelope_bytes),
            peer_called_in=self._peer_called_in, key_grace_ms=self.config.key_grace_s * 1000,
            key_changes=self.key_changes, limits=self.config.federation_limits,
            clock=self.clock)
        self._federation = federation
        federation_app = federation.app()
        CheckpointRoute(federation, self.checkpoints).add_to(federation_app)
        client = ClientApi(intake=self.intake, metrics=self.metrics,
                           token_ttl_s=self.config.token_ttl_s,
                           max_envelope_bytes=limits.max_envelope_bytes,
                           own_cert=lambda: self.signing_cert_pem,
                           issue_card=self._issue_card,
                           key_grace_ms=self.config.key_grace_s * 1000,
                           on_ack=self.desk.acknowledged,
                           pseudonym_ring=self._pseudonym_ring.get,
                           evaluations_per_hour=self.config.signals.evaluations_per_hour,
                           clock=self.clock, failed_loops=self.supervisor.failed,
                           own_chain=lambda: [raw for _, raw in self._chain])
        self.store.on_inbox = client.inbox_watch.notify  # wakes live inbox streams
        # ... and so does what the node's other workers commit (one poll per process).
        self.inbox_tail = InboxTail(
            head=self.store.inbox_head,
            after=lambda seq: self.store.inbox_officers_after(seq, limit=InboxTail.PAGE),
            watch=client.inbox_watch, interval_s=self.config.delivery.inbox_poll_s)
        for name, app, address, ctx, guard in (
            ("federation", federation_app, self.config.federation, self._tls_contexts[0],
             federation.guard),
            ("client", client.app(), self.config.client, self._tls_contexts[1], None),
        ):
            # The federation listener bounds what each peer may cost (federation/guard.py).
            runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                   **(guard.runner_kwargs() if guard else {}))
            await runner.setup()
            self._runners.append(runner)
            site: web.BaseSite = (
                guard.site(runner, address.host, address.port, ssl_context=ctx, backlog=256)
                if guard else web.TCPSite(runner, address.host, address.port, ssl_context=ctx,
                                          backlog=256, shutdown_timeout=2.0))
            try:
                await site.start()
            except OSError as exc:  # a start-up error for the operator, not a traceback
                raise _listen_error(name, f"{address.host}:{address.port}", exc) from None

    async def _expiry_loop(self) -> None:
        # A batch sent just before an envelope expired may still be answered within the
        # request timeout; expire only what can no longer be in flight, so a notice never
        # contradicts a delivery. (Senders stop offering a hop at its expiry.)
        margin = int(2 * self.config.delivery.request_timeout_s * 1000)
        while True:
            await asyncio.sleep(self.config.delivery.expiry_sweep_s)
            try:
                # Each expired hop's non-delivery notice is owed from this same commit.
                await self.store.expire_due(self.clock.now_ms() - margin)
            except Unavailable as exc:
                log.warning("expiry.sweep_failed", reason=exc.detail[:200])

    async def _retention_loop(self) -> None:
        """Purge every envelope whose tag's retain_until has passed: at start, then every
        ``[store] retention_sweep_s``. Storage trouble is logged and retried next pass."""
        while True:
            try:
                await self.purge_due()
            except Unavailable as exc:
                log.warning("retention.sweep_failed", reason=exc.detail[:200])
            await asyncio.sleep(self.config.store.retention_sweep_s)

    async def purge_due(self) -> int:
        """One retention pass, batch by batch (one transaction each) until none is due."""
        total = 0
        while True:
            purged = await self.store.retention.purge_due(self.clock.now_ms(), PURGE_BATCH,
                                                limits=self.config.limits)
            total += purged
            if purged < PURGE_BATCH:
                break
        if total:
            log.info("retention.purged", envelopes=total)
        return total

    def _disclosure_receipt(self, forward: Envelope, owed: tagflow.Disclosure,
                            recipients: list[str]) -> Effect:
        """A forward reached its recipients here: the owner is owed a signed receipt of
        what was done with their information (recorded with the forward's acceptance,
        issued by the effects drain); their restrictions and recalls follow it."""
        return notice(
            "disclosure", recipients=[owed.owner], ref=owed.original,
            content={"original": owed.original, "forward": forward.id,
                     "forwarder": forward.header.sender, "recipients": recipients,
                     "node": self.config.id,
                     **({"consent_for": owed.consent_for} if owed.consent_for else {})})


class _Stop(Exception):
    """Raised inside the TaskGroup to cancel every background task on shutdown."""


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _listen_error(listener: str, address: str, exc: OSError) -> ConfigError:
    """Why a listener could not bind, naming the config key that chose the address."""
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"the {listener} listener cannot bind {address}: another process "
                         f"listens there (find it with `ss -ltnp 'sport = :"
                         f"{address.rsplit(':', 1)[1]}'`); stop it, or change [listen] "
                         f"{listener} in the config")
    return ConfigError(f"the {listener} listener cannot bind {address}: "
                       f"{exc.strerror or exc} (check [listen] {listener} in the config)")
