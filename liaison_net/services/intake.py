"""Where a node decides about an envelope: at submission (origin) and on receipt (destination).

Both paths: verify the exact bytes under a key the node trusts, check the clock, apply the
ownership policy for this layer, then store (durably, with its audit entry) or refuse
(with an audit entry naming the rule). Nothing is stored before every check has passed.

    origin:      officer --submit--> verify (signer = the logged-in officer) -> recipients
                 known -> tagflow.check(ORIGIN): who may sign it, the owner, a forward's
                 original, policy SEND + RELAY (or FORWARD) per node -> store: local inbox
                 entries and one queued hop per remote node, the consent used
    destination: peer --transaction--> verify -> the sender belongs to the peer that relays
                 it -> tagflow.check(DESTINATION): the same rules, policy DELIVER (or
                 FORWARD) here -> store: inbox entries (dedupe by id), the consent used

What a first copy obliges the node to do is written in the transaction that stores it
(``core/effects``, a transactional outbox): the request's due time (or the request a reply
answers), signal match notices, a forward's disclosure receipt to the owner, and
the delivery evidence the ``Witness`` owes the sender ("accepted" at the origin, "relayed"
for each recipient whose inbox now holds it). The effects drain issues the envelopes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from liaison_net import timeline
from liaison_net.core import art25, crypto, restriction, tagflow
from liaison_net.core.audit import detail
from liaison_net.core.consent import claimed_owner
from liaison_net.core.effects import Effect
from liaison_net.core.envelope import (
    Envelope,
    Header,
    Recipient,
    UnverifiedFrame,
    check_fresh,
    read_frame,
)
from liaison_net.core.ids import id_to_text, node_of, node_principal
from liaison_net.core.limits import Limits
from liaison_net.core.sealing import KeyLookup, SignerKey, verify_frame
from liaison_net.errors import (
    Forbidden,
    KeysChanged,
    LiaisonError,
    NotFound,
    PolicyRefused,
    Refused,
    Revoked,
)
from liaison_net.metrics import NodeMetrics
from liaison_net.services.asked import Asked
from liaison_net.services.holds import HoldDesk
from liaison_net.services.request_desk import RequestDesk
from liaison_net.services.signal_desk import SignalDesk
from liaison_net.services.witness import Witness
from liaison_net.store.envelope_store import Acceptance, Then
from liaison_net.store.node_store import AcceptOutcome, NodeStore

log = structlog.get_logger("liaison.intake")

#: Decisions made again when a card, key or revocation was written between an envelope's
#: decision and its write (``KeysChanged``): past this, the caller hears ``keys_changed``
#: (retryable). Key changes are rare; three in a row under one envelope, rarer still.
KEYS_TRIES = 3


class _Redecide(Exception):
    """Keys changed before a transaction's write: its refusals (by position, already
    audited) stand, and its admitted envelopes (positions) are to be decided again."""

    def __init__(self, refused: dict[int, LiaisonError], admitted: list[int]) -> None:
        super().__init__("keys changed")
        self.refused = refused
        self.admitted = admitted

#: ``verify_frame`` of a batch run elsewhere (workers/verify_pool.py): the signer keys
#: looked up here, the signatures checked there; one envelope or refusal per frame, in order.
Verifier = Callable[[Sequence[tuple[UnverifiedFrame, SignerKey | None]]],
                    Awaitable[list[Envelope | LiaisonError]]]


@dataclass
class Keys:
    """The signing keys a node trusts besides officers' cards: its own and its peers'."""

    own: crypto.SigningKeyPair
    nodes: dict[str, bytes]  # node id -> certified Ed25519 public key
    # public key -> its key id: asked for every received envelope (a hash per node key
    # each time was 1.4 % of a destination's event loop at catch-up, docs/performance.md,
    # lane catchup16). By the key itself, so a key written into ``nodes`` is never stale.
    _ids: dict[bytes, bytes] = field(default_factory=dict, repr=False, compare=False)

    def node_signer(self, key_id: bytes) -> SignerKey | None:
        for node, public in self.nodes.items():
            if self._key_id(public) == key_id:
                return SignerKey(node_principal(node), public)
        return None

    def _key_id(self, public: bytes) -> bytes:
        known = self._ids.get(public)
        if known is None:
            if len(self._ids) >= 4 * len(self.nodes) + 16:  # rotations: keep it bounded
                self._ids.clear()
            known = self._ids[public] = crypto.signing_key_id(public)
        return known


class Intake:
    def __init__(self, *, node_id: str, peers: set[str], store: NodeStore, keys: Keys,
                 limits: Limits, metrics: NodeMetrics,
                 desk: SignalDesk | None = None,
                 on_disclosure: Callable[[Envelope, tagflow.Disclosure, list[str]],
                                         Effect] | None = None,
                 requests: RequestDesk | None = None,
                 witness: Witness | None = None,
                 verifier: Verifier | None = None,
                 holds: HoldDesk | None = None) -> None:
        self.node_id = node_id
        self.peers = peers
        self.store = store
        self.keys = keys
        self.limits = limits
        self.metrics = metrics
        self.desk = desk
        self.on_disclosure = on_disclosure  # a forward arrived: the owner's receipt
        self.requests = requests
        self.witness = witness  # what delivery evidence the sender is owed
        # Runs verify_frame elsewhere (workers/verify_pool.py, [workers] verify); None: here.
        self.verifier = verifier
        self.holds = holds  # four-eyes: what waits for a second officer, approvals checked
        #: Set by the federation door: counts a peer's envelopes that cannot be verified
        #: (peer, code, raw bytes); it audits them per peer and window, not one by one.
        self.on_unverified: Callable[[str, str, bytes], None] | None = None
        # The counter's child, looked up once: ``labels()`` takes a lock and a dict lookup
        # on every call, and every submit counts.
        self._accepted_from_officers = metrics.accepted.labels(source="officer")

    async def _signed(self, raw: bytes, now: int, asked: Asked | None = None
                      ) -> tuple[UnverifiedFrame, SignerKey | None]:
        frame = read_frame(raw, self.limits)
        signer = self.keys.node_signer(frame.signer_key_id)
        if signer is None:
            signer = (await asked.signer(frame.signer_key_id) if asked is not None
                      else await self.store.keys.signer(frame.signer_key_id, now=now))
        return frame, signer

    async def _verify(self, raw: bytes, now: int, asked: Asked | None = None) -> Envelope:
        # Freshness is checked by the caller, once ``envelope`` is bound: a stale or skewed
        # envelope's refusal is then audited under its id.
        frame, signer = await self._signed(raw, now, asked)
        return verify_frame(frame, signer, now=None, limits=self.limits)

    async def _verified_many(self, raws: Sequence[bytes], now: int,
                             asked: Asked | None = None
                             ) -> Sequence[Envelope | LiaisonError | None]:
        """A batch's envelopes verified together by the ``verifier`` (which sends only bulk
        to its workers), or None each: then ``_admit*`` verifies each in turn, here."""
        if self.verifier is None or len(raws) < 2:
            return [None] * len(raws)

        async def signed(raw: bytes) -> tuple[UnverifiedFrame, SignerKey | None] | LiaisonError:
            try:
                return await self._signed(raw, now, asked)
            except LiaisonError as exc:
                return exc

        works = await asyncio.gather(*(signed(raw) for raw in raws))
        out: list[Envelope | LiaisonError | None] = [
            w if isinstance(w, LiaisonError) else None for w in works]
        ready = [(i, w) for i, w in enumerate(works) if not isinstance(w, LiaisonError)]
        for (i, _), result in zip(ready, await self.verifier([w for _, w in ready]),
                                  strict=True):
            out[i] = result
        return out

    async def _refuse(self, exc: LiaisonError, *, now: int, actor: str, layer: str,
                      envelope_id: bytes | None, peer: str | None = None) -> None:
        self.metrics.refused.labels(code=exc.code).inc()
        log.info("envelope.refused", layer=layer, code=exc.code, actor=actor, peer=peer,
                 envelope_id=id_to_text(envelope_id) if envelope_id else None)
        await self.store.audit(now=now, event="envelope.refused", actor=actor,
                               audit_detail=detail(layer=layer, code=exc.code, peer=peer,
                                                   reason=exc.detail[:200]),
                               envelope_id=envelope_id)

    async def _consent_keys(self, header: Header) -> Callable[[str], bytes | None]:
        """The signing key of the officer a forward's consent claims as owner, if any."""
        if header.consent is None:
            return lambda _officer: None
        owner = claimed_owner(header.consent)
        keys = await self.store.officer_keys(owner)
        return {owner: keys[0]}.get if keys is not None else (lambda _officer: None)

    async def _original_keys(self, header: Header) -> KeyLookup:
        """The keys of the signers a forward's originals claim (node keys, cards, keys kept
        after a rotation): looked up first, so the core check runs without the store."""
        keys: dict[bytes, SignerKey] = {}
        for key_id in tagflow.claimed_keys(header, self.limits):
            signer = self.keys.node_signer(key_id)
            if signer is None:
                signer = await self.store.keys.signer(key_id, now=None)  # revoked: raises
            if signer is not None:
                keys[key_id] = signer
        return keys.get

    async def _flow(self, envelope: Envelope, layer: tagflow.Layer, now: int) -> tagflow.Flow:
        """The one tag check (core/tagflow.py), with the keys this node trusts."""
        h = envelope.header
        return tagflow.check(h, layer=layer, here=self.node_id, now=now,
                             lookup=await self._original_keys(h),
                             officer_key=await self._consent_keys(h), limits=self.limits)

    async def _restrictions(self, envelope: Envelope, flow: tagflow.Flow, now: int, *,
                            targets: Sequence[Recipient]) -> Then | None:
        """The owner's restriction updates, at this node (``core/restriction.py``): an
        update is applied with its own acceptance; a forward of restricted information is
        decided under each update too (refused if recalled, or if a tighter tag now forbids
        it); an envelope carrying information that updates here are about gets them
        applied on arrival. What to run in the accepting transaction, if anything."""
        h = envelope.header
        if restriction.is_update(h):
            update = restriction.check_update(h, flow.originals[0])
            return functools.partial(self.store.restrictions.apply_in, update=update, now=now)
        originals = [o.id for o in flow.originals]
        updates = await self.store.restrictions.about([h.id, *originals])
        if not updates:
            return None
        if tagflow.is_forward(h):
            about = [u for u in updates if u.original in originals]
            latest = max((u.issued for u in about), default=0)
            consent = flow.consent
            refusal = restriction.forward_refusal(
                about, now=now, actor=node_of(h.sender),
                recipients=[(r.node, consent is not None and consent.covers(r.officer)
                             and consent.issued > latest) for r in targets])
            if refusal is not None:
                raise refusal
        return functools.partial(self.store.restrictions.catch_up_in, envelope_id=h.id,
                                 originals=[h.id, *originals], now=now)

    async def submit(self, officer: str, raw: bytes, now: int) -> AcceptOutcome:
        """An officer of this node hands over an envelope (origin node)."""
        for attempt in range(1, KEYS_TRIES + 1):
            keys = self.store.keys_stamp()  # the keys this decision reads (_admit)
            item = await self._admit(officer, raw, now)
            timeline.mark("o.verified", item.envelope.id)
            try:
                outcome = await self.store.accept(
                    item.envelope, now=now, actor=item.actor, event=item.event,
                    local_recipients=item.local_recipients,
                    remote_nodes=item.remote_nodes, audit_detail=item.audit_detail,
                    consent_digest=item.consent_digest, effects=item.effects,
                    track_request=item.track_request, then=item.then, hold=item.hold,
                    keys_as_of=keys)
                break
            except KeysChanged:  # a card, key or revocation written meanwhile: again
                if attempt == KEYS_TRIES:
                    raise
            except PolicyRefused as exc:  # a consent used already, an update relaxing
                await self._refuse(exc, now=now, actor=officer, layer="origin",  # another
                                   envelope_id=item.envelope.id)
                raise
        timeline.mark("o.committed", item.envelope.id)
        self._submitted(item, outcome)
        return outcome

    async def submit_many(self, officer: str, raws: Sequence[bytes],
                          now: int) -> list[AcceptOutcome | LiaisonError]:
        """Several envelopes of one officer in one request: each checked exactly as
        ``submit`` checks it (a refusal audited alike), every admitted one stored in ONE
        write (``NodeStore.accept_many``); one outcome or error per envelope, in order.
        Storage trouble raises (``Unavailable``): then nothing was stored."""
        results: list[AcceptOutcome | LiaisonError | None] = [None] * len(raws)
        todo = list(range(len(raws)))  # decided again only if keys changed meanwhile
        for attempt in range(1, KEYS_TRIES + 1):
            keys = self.store.keys_stamp()  # the keys these decisions read (_admit)
            admitted: list[tuple[int, Acceptance]] = []
            verified = await self._verified_many([raws[i] for i in todo], now)
            for i, done in zip(todo, verified, strict=True):
                try:  # a refusal is audited here, once: it stays the answer
                    admitted.append((i, await self._admit(officer, raws[i], now, done)))
                except LiaisonError as exc:
                    results[i] = exc
            try:
                outcomes = (await self.store.accept_many(
                    [item for _, item in admitted], now=now, keys_as_of=keys)
                    if admitted else [])
                break
            except KeysChanged:  # a card, key or revocation written meanwhile: the
                if attempt == KEYS_TRIES:  # admitted ones are decided again
                    raise
                todo = [i for i, _ in admitted]
        for (i, item), outcome in zip(admitted, outcomes, strict=True):
            if isinstance(outcome, PolicyRefused):
                await self._refuse(outcome, now=now, actor=officer, layer="origin",
                                   envelope_id=item.envelope.id)
            elif isinstance(outcome, AcceptOutcome):
                self._submitted(item, outcome)
            results[i] = outcome
        return [r for r in results if r is not None]

    async def _admit(self, officer: str, raw: bytes, now: int,
                     verified: Envelope | LiaisonError | None = None) -> Acceptance:
        """Every check of a submission, nothing stored: what to store, or the refusal
        (audited, then raised). ``verified``: the result of ``_verify`` if already run."""
        envelope: Envelope | None = None
        try:
            if isinstance(verified, LiaisonError):
                raise verified
            envelope = verified if verified is not None else await self._verify(raw, now)
            check_fresh(envelope.header, now, self.limits)
            h = envelope.header
            if h.sender != officer:
                raise Forbidden(f"logged in as {officer}, envelope signed by {h.sender}")
            local, remote = [], set()
            for r in h.recipients:
                node = r.node  # validated once (``node_of``), not at every use below
                if node != self.node_id and node not in self.peers:
                    raise NotFound(f"recipient {r.officer}: node {node} is not a peer")
                # Every recipient, local or remote, must be in the directory: an unknown one
                # would only bounce at the destination (and back off the whole link). A key
                # id older than the card is fine: officers keep superseded keys to read.
                if await self.store.officer_keys(r.officer) is None:
                    raise NotFound(f"recipient {r.officer} is not in the directory")
                revoked = await self.store.keys.officer_revocation(r.officer, now=now)
                if revoked is not None:
                    raise Revoked(f"recipient {r.officer} is revoked: {revoked}")
                if node == self.node_id:
                    local.append(r.officer)
                else:
                    remote.add(node)
            if h.ref is not None:
                # A forward, reply or anything else naming an envelope whose content was
                # purged here (retention) is refused: 410 purged.
                await self.store.retention.check_not_purged(h.ref)
            if tagflow.is_forward(h):
                assert h.ref is not None
                if not await self.store.may_read(officer, h.ref):
                    raise NotFound(f"{officer} cannot forward {id_to_text(h.ref)}: "
                                   "not received here")
            flow = await self._flow(envelope, tagflow.Layer.ORIGIN, now)
            then = await self._restrictions(envelope, flow, now, targets=h.recipients)
            hold = self.holds.plan(envelope, now) if self.holds is not None else None
        except LiaisonError as exc:
            await self._refuse(exc, now=now, actor=officer, layer="origin",
                               envelope_id=envelope.id if envelope else None)
            raise
        # Held (four-eyes): "accepted" now; local inboxes get theirs on release.
        effects = (self.witness.accepted(envelope, local=[] if hold else local, now=now)
                   if self.witness is not None else [])
        if hold is not None and self.holds is not None:
            effects.append(self.holds.held_notice(envelope, hold))
        owed = tagflow.disclosure_owed(h, flow)
        if owed is not None and local and self.on_disclosure is not None:
            # A forward to colleagues on this node discloses the owner's information
            # here: the owner's receipt is owed as for a remote recipient.
            effects.append(self.on_disclosure(envelope, owed, local))
        return Acceptance(
            envelope, actor=officer, event="envelope.held" if hold else "envelope.accepted",
            local_recipients=local, remote_nodes=sorted(remote),
            audit_detail=detail(layer="origin", to=sorted(remote) + (["local"] if local else []),
                                **art25.reception(h, local, forward=tagflow.is_forward(h),
                                                  recipients=True),
                                **({"held_for": hold.unit} if hold else {})),
            consent_digest=flow.consent_digest, effects=effects,
            track_request=self.requests is not None, then=then, hold=hold)

    def _submitted(self, item: Acceptance, outcome: AcceptOutcome) -> None:
        """After the commit: a first copy raises its signal, is counted. Its peers' senders
        had its hops at the commit already (``NodeStore.on_queued``)."""
        if outcome.duplicate:
            return
        h = item.envelope.header
        if h.signal is not None and self.desk is not None:
            self.desk.raised(item.envelope)
        self._accepted_from_officers.inc()
        if log.is_enabled_for(logging.DEBUG):  # its id's text is made only if logged
            log.debug("envelope.accepted", envelope_id=h.id_text, sender=item.actor,
                      peers=item.remote_nodes, local=len(item.local_recipients),
                      held=item.hold is not None)

    async def receive(self, peer: str, raw: bytes, now: int, *,
                      covers: Mapping[bytes, Sequence[bytes]] | None = None,
                      approvals: Mapping[bytes, bytes] | None = None) -> AcceptOutcome:
        """One envelope relayed by a peer: ``receive_many`` of one; its refusal raised."""
        result = (await self.receive_many(peer, [raw], now, covers=covers,
                                          approvals=approvals))[0]
        if isinstance(result, LiaisonError):
            raise result
        return result

    async def receive_many(self, peer: str, raws: Sequence[bytes], now: int, *,
                           covers: Mapping[bytes, Sequence[bytes]] | None = None,
                           approvals: Mapping[bytes, bytes] | None = None
                           ) -> list[AcceptOutcome | LiaisonError]:
        """The envelopes of one federation transaction (destination node): each decided on
        its own exactly as alone (a refusal audited alike), every admitted one stored in
        ONE write (``NodeStore.accept_many``, a savepoint each: one refused stops none).
        One outcome or error per envelope, in order; storage trouble is each admitted
        one's error (nothing of them stored), as it was when each had its own write.

        Why one write: a transaction's envelopes then share one commit and one drain pass,
        so their "relayed" evidence goes back as one batch, and the node spends one future
        and one savepoint group per transaction instead of one per envelope.

        ``covers``: what the peer says each batch evidence envelope of its transaction
        covers (a hint: the store indexes it only for the peer node's own evidence, for
        envelopes its recipient sent). ``approvals``: the four-eyes approvals carried beside
        the envelopes (by id), each checked here and stored with its envelope
        (``services/holds.py``)."""
        results: list[AcceptOutcome | LiaisonError] = [
            KeysChanged("keys kept changing while the transaction was decided; nothing "
                        "stored")] * len(raws)
        todo = list(range(len(raws)))  # decided again only if keys changed meanwhile
        for _ in range(KEYS_TRIES):
            try:
                got = await self._receive_many(peer, [raws[i] for i in todo], now,
                                               covers=covers, approvals=approvals,
                                               keys=self.store.keys_stamp())
            except _Redecide as again:  # its refusals are audited, and stay the answers
                for j, refusal in again.refused.items():
                    results[todo[j]] = refusal
                todo = [todo[j] for j in again.admitted]
                continue
            for i, outcome in zip(todo, got, strict=True):
                results[i] = outcome
            break
        return results

    async def _receive_many(self, peer: str, raws: Sequence[bytes], now: int, *,
                            covers: Mapping[bytes, Sequence[bytes]] | None,
                            approvals: Mapping[bytes, bytes] | None,
                            keys: int) -> list[AcceptOutcome | LiaisonError]:
        """``receive_many`` decided against the keys of stamp ``keys``; ``_Redecide`` if
        they moved before the write (nothing stored; the refusals made, audited, are in
        it, and the admitted ones are to be decided again)."""
        # The signer and recipient lookups its envelopes share, each asked once.
        asked = Asked(self.store, now)
        verified = await self._verified_many(raws, now, asked)

        async def admit(raw: bytes, done: Envelope | LiaisonError | None
                        ) -> Acceptance | LiaisonError:
            try:
                return await self._admit_received(peer, raw, now, done, asked,
                                                  covers=covers, approvals=approvals)
            except LiaisonError as exc:
                return exc

        # Decided concurrently, as their reads (directory, restrictions) overlap.
        results: list[Acceptance | AcceptOutcome | LiaisonError] = list(
            await asyncio.gather(*(admit(raw, done) for raw, done in zip(raws, verified,
                                                                          strict=True))))
        admitted = [(i, item) for i, item in enumerate(results)
                    if isinstance(item, Acceptance)]
        outcomes: list[AcceptOutcome | LiaisonError] = []
        if admitted:
            try:
                outcomes = await self.store.accept_many([item for _, item in admitted],
                                                        now=now, keys_as_of=keys)
            except KeysChanged:  # decided again (receive_many)
                raise _Redecide(
                    {i: r for i, r in enumerate(results) if isinstance(r, LiaisonError)},
                    [i for i, _ in admitted]) from None
            except LiaisonError as exc:  # storage trouble: none of them was stored
                outcomes = [exc] * len(admitted)
        fresh = 0
        # The debug line's envelope id is text made per envelope (1 % of a destination's
        # event loop at catch-up, docs/performance.md, lane catchup16): made only if logged.
        traced = log.is_enabled_for(logging.DEBUG)
        for (i, item), outcome in zip(admitted, outcomes, strict=True):
            if isinstance(outcome, PolicyRefused):  # a consent used already, an update
                await self._refuse(outcome, now=now, actor=peer,  # relaxing another
                                   layer="destination", envelope_id=item.envelope.id,
                                   peer=peer)
            elif isinstance(outcome, AcceptOutcome) and not outcome.duplicate:
                self._received(peer, item, outcome, traced=traced)
                fresh += 1
            results[i] = outcome
        if fresh:  # one labelled counter update per transaction (~20 µs each), not per copy
            self.metrics.accepted.labels(source=peer).inc(fresh)
        return [r for r in results if not isinstance(r, Acceptance)]

    async def _admit_received(self, peer: str, raw: bytes, now: int,
                              verified: Envelope | LiaisonError | None, asked: Asked, *,
                              covers: Mapping[bytes, Sequence[bytes]] | None,
                              approvals: Mapping[bytes, bytes] | None) -> Acceptance:
        """Every check of a received envelope, nothing stored: what to store, or the
        refusal (audited, or tallied when no key verifies it; then raised)."""
        envelope: Envelope | None = None
        try:
            if isinstance(verified, LiaisonError):
                raise verified
            envelope = (verified if verified is not None
                        else await self._verify(raw, now, asked))
            check_fresh(envelope.header, now, self.limits)
            h = envelope.header
            sender_node = h.sender.split("/")[0]
            if sender_node != peer:
                raise Forbidden(f"peer {peer} relayed an envelope of {h.sender} "
                                f"(node {sender_node}) in another node's name")
            local = [r.officer for r in h.recipients if r.node == self.node_id]
            if not local:
                raise Refused("no recipient of this envelope is on this node",
                              code="not_for_this_node")
            for officer in local:
                if await asked.officer_keys(officer) is None:
                    raise NotFound(f"recipient {officer} is not in the directory")
            flow = await self._flow(envelope, tagflow.Layer.DESTINATION, now)
            then = await self._restrictions(
                envelope, flow, now, targets=[r for r in h.recipients if r.node == self.node_id])
            approval = (await self.holds.carried(envelope, (approvals or {}).get(h.id), now)
                        if self.holds is not None else None)
        except LiaisonError as exc:
            if envelope is None and self.on_unverified is not None:
                # Bytes no key verifies name no envelope: a decision about garbage, tallied.
                self.metrics.refused.labels(code=exc.code).inc()
                self.on_unverified(peer, exc.code, raw)
                raise
            await self._refuse(exc, now=now, actor=peer, layer="destination",
                               envelope_id=envelope.id if envelope else None, peer=peer)
            raise
        effects = (self.witness.relayed(envelope, local=local, now=now)
                   if self.witness is not None else [])
        owed = tagflow.disclosure_owed(envelope.header, flow)
        if owed is not None and self.on_disclosure is not None:
            effects.append(self.on_disclosure(envelope, owed, local))
        return Acceptance(
            envelope, actor=peer, event="envelope.delivered_to_inbox",
            local_recipients=local, remote_nodes=[],
            audit_detail=(detail(layer="destination", peer=peer, recipients=len(local),
                                 **art25.reception(h, local, forward=True))
                          if tagflow.is_forward(h) else asked.delivery_detail(peer, h, local)),
            signal_deadline=self.desk.deadline(h, now) if self.desk is not None else None,
            received=True, consent_digest=flow.consent_digest, effects=effects,
            track_request=self.requests is not None,
            covers=(covers or {}).get(h.id, ()), then=then, approval=approval)

    def _received(self, peer: str, item: Acceptance, outcome: AcceptOutcome, *,
                  traced: bool) -> None:
        """After the commit: a first copy's signal is handed to the signal desk.
        ``traced``: whether the debug level is logged (its line costs an id's text)."""
        h = item.envelope.header
        if h.signal is not None and self.desk is not None:
            self.desk.received(item.envelope, matches=outcome.matches)
        if traced:
            log.debug("envelope.received", envelope_id=h.id_text, peer=peer,
                      recipients=len(item.local_recipients))
