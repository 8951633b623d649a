"""The federation routes a node serves to its peers, over mutual TLS 1.3 only.

The peer's node id is read from its verified client certificate, never from the body;
a body that claims another origin is refused. Each envelope of a transaction is decided on
its own, all admitted ones are stored in one write (``intake.receive_many``), and each is
answered in order after that commit. What one peer may cost (rate, requests in flight,
connections, slow requests) is bounded by ``guard.PeerGuard`` before anything of its
request is decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from cryptography import x509

from liaison_net import timeline
from liaison_net.clock import Clock
from liaison_net.config import FederationLimits
from liaison_net.core import codec, identity, rotation
from liaison_net.core.audit import detail
from liaison_net.core.ratelimit import RefusalTally, RefusalWindow
from liaison_net.errors import (
    CosignThreshold,
    Forbidden,
    LiaisonError,
    LimitExceeded,
    Malformed,
    RateLimited,
    Refused,
    RequestTimeout,
)
from liaison_net.federation import protocol
from liaison_net.federation.guard import PeerGuard
from liaison_net.federation.tls import peer_node_id
from liaison_net.http_common import (
    MSGPACK,
    error_middleware,
    msgpack_response,
    read_body,
    read_msgpack,
)
from liaison_net.pki import certificates
from liaison_net.services.intake import Intake
from liaison_net.services.key_changes import KeyChangeDesk

log = structlog.get_logger("liaison.federation")

#: Distinct (node, code) refusal windows kept at once.
MAX_REFUSAL_WINDOWS = 1024


class FederationServer:
    def __init__(self, *, intake: Intake, ca_cert: x509.Certificate, max_body: int,
                 peer_called_in: Callable[[str], None], key_grace_ms: int,
                 key_changes: KeyChangeDesk,
                 limits: FederationLimits | None = None, clock: Clock) -> None:
        self.intake = intake
        self.key_changes = key_changes
        self.clock = clock
        self.ca_cert = ca_cert
        self.max_body = max_body
        self._peer_called_in = peer_called_in
        self.key_grace_ms = key_grace_ms
        self.guard = PeerGuard(limits or FederationLimits(), audit=self._audit_limited)
        self._refusals: dict[tuple[str, str], RefusalWindow] = {}
        # Envelopes of a peer that no key verifies: tallied per peer (configured peers only,
        # so bounded), audited once per window as ``peer.envelopes_refused``.
        self._unverified: dict[str, RefusalTally] = {}
        intake.on_unverified = self._tally_unverified

    def _tally_unverified(self, peer: str, code: str, raw: bytes) -> None:
        tally = self._unverified.get(peer)
        if tally is None:
            tally = self._unverified[peer] = RefusalTally(self.guard.limits.audit_window_s)
        # A digest, not the id the bytes claim: nothing verified them, so the claimed id
        # could name (and muddle the trail of) a real envelope.
        tally.add(code, "sha256:" + hashlib.sha256(raw).hexdigest()[:32])

    async def report_unverified(self, *, final: bool = False) -> None:
        """Audit each peer's tally of unverifiable envelopes whose window has passed (all of
        them when ``final``, at shutdown). Run after each transaction and every window by
        ``run_reports`` (supervised), so a tally never waits long for its entry."""
        now = time.monotonic()
        for peer, tally in list(self._unverified.items()):
            report = tally.report(float("inf") if final else now)
            if report is None:
                continue
            log.warning("peer.envelopes_refused", peer=peer, refused=report["refused"])
            try:
                await self.intake.store.audit(
                    now=self.clock.now_ms(), event="peer.envelopes_refused", actor=peer,
                    audit_detail=detail(**report))
            except LiaisonError as exc:  # storage trouble: the count is lost, logged
                log.warning("peer.envelopes_refused_not_audited", peer=peer, code=exc.code,
                            refused=report["refused"])

    async def run_reports(self) -> None:
        while True:
            await asyncio.sleep(self.guard.limits.audit_window_s)
            await self.report_unverified()

    async def _audit_limited(self, peer: str, audit_detail: str) -> None:
        await self.intake.store.audit(now=self.clock.now_ms(), event="peer.limited", actor=peer,
                                      audit_detail=audit_detail)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware], client_max_size=self.max_body)
        app.router.add_post(protocol.TRANSACTION_PATH, self.transaction)
        app.router.add_post(protocol.DIRECTORY_PATH, self.directory)
        app.router.add_post(protocol.REVOCATIONS_PATH, self.revocations)
        return app

    def _peer(self, request: web.Request) -> str:
        """The configured peer this request comes from, by its certificate."""
        peer = self._node_of(request)
        if peer not in self.intake.peers:
            raise Forbidden(f"node {peer} is not a configured peer")
        return peer

    @staticmethod
    def _node_of(request: web.Request) -> str:
        return peer_node_id(request.transport.get_extra_info("ssl_object")
                            if request.transport else None)

    @contextlib.asynccontextmanager
    async def _refusal_audited(self, request: web.Request) -> AsyncIterator[None]:
        """A whole request refused (another origin claimed, over a count, malformed) is
        audited as ``peer.refused``, at most once per peer, code and ``audit_window_s`` with
        the number of refusals it stands for: a peer sending garbage in a loop must not fill
        the disk through the audit log. Rate and timeout refusals are the guard's own
        (``peer.limited``); single envelopes are audited by intake."""
        try:
            yield
        except Refused as exc:
            if not isinstance(exc, RateLimited | RequestTimeout):
                with contextlib.suppress(LiaisonError):  # no node id: nothing to audit under
                    await self._audit_refused(self._node_of(request), request.path, exc)
            raise

    async def _audit_refused(self, node: str, path: str, exc: Refused) -> None:
        key = (node, exc.code)
        window = self._refusals.get(key)
        if window is None:
            if len(self._refusals) >= MAX_REFUSAL_WINDOWS:
                self._refusals.clear()  # bounded memory; at worst one extra audit row each
            window = self._refusals[key] = RefusalWindow(self.guard.limits.audit_window_s)
        refused = window.refuse(time.monotonic())
        if refused is None:
            return
        log.warning("peer.refused", peer=node, code=exc.code, refused=refused)
        try:
            await self.intake.store.audit(
                now=self.clock.now_ms(), event="peer.refused", actor=node,
                audit_detail=detail(code=exc.code, path=path[:100], reason=exc.detail[:200],
                                    refused=refused, window_s=self.guard.limits.audit_window_s))
        except LiaisonError as audit_failed:  # storage trouble must not mask the refusal
            log.warning("peer.refused_not_audited", peer=node, code=audit_failed.code)

    @staticmethod
    def _claims(peer: str, claimed: Any) -> None:
        if claimed != peer:
            raise Forbidden(f"peer {peer} claims to speak for {str(claimed)[:20]}")

    async def _charged(self, peer: str, items: int) -> None:
        """The body is read and checked: its items must fit the peer's rate."""
        await self.guard.charge(peer, items)
        self._peer_called_in(peer)

    async def transaction(self, request: web.Request) -> web.Response:
        async with self._refusal_audited(request):
            peer = self._peer(request)
            async with self.guard.admit(peer):
                return await self._transaction(request, peer)

    async def _transaction(self, request: web.Request, peer: str) -> web.Response:
        body = protocol.decode_transaction(
            await self.guard.body(peer, read_body(request, MSGPACK, self.max_body)),
            max_bytes=self.max_body)
        read = timeline.now()
        self._claims(peer, body.origin)
        await self._charged(peer, len(body.envelopes))
        # Each envelope decided on its own, all admitted ones stored in ONE write (one
        # commit, one drain pass for their evidence); the answers in the envelopes' order.
        outcomes = await self.intake.receive_many(peer, body.envelopes, self.clock.now_ms(),
                                                  covers=body.covers,
                                                  approvals=body.approvals)
        results = [[protocol.REFUSED, o.code, o.detail[:200]] if isinstance(o, LiaisonError)
                   else [protocol.DUPLICATE if o.duplicate else protocol.ACCEPTED, "", ""]
                   for o in outcomes]
        await self.report_unverified()  # garbage in this batch: its one entry, if due
        if timeline.enabled():
            for o in outcomes:
                if not isinstance(o, LiaisonError):
                    timeline.mark_at(read, "d.read", o.envelope_id)
                    timeline.mark("d.answer", o.envelope_id)
        # Lists of three str under one key: canonical as built (no walk over 250 results).
        return web.Response(body=codec.pack_built({"results": results}), content_type=MSGPACK)

    async def directory(self, request: web.Request) -> web.Response:
        async with self._refusal_audited(request):
            peer = self._peer(request)
            async with self.guard.admit(peer):
                return await self._directory(request, peer)

    async def _directory(self, request: web.Request, peer: str) -> web.Response:
        body = await self.guard.body(
            peer, read_msgpack_optional(request, self.max_body, protocol.DIRECTORY_FIELDS,
                                        {"key_changes": []}))
        self._claims(peer, body["origin"])
        cert_pem, cards, chain = body["node_cert"], body["cards"], body["key_changes"]
        if not isinstance(cert_pem, bytes):
            raise Malformed("node_cert must be PEM bytes")
        if not isinstance(cards, list) or not all(isinstance(c, bytes) for c in cards):
            raise Malformed("cards must be a list of byte strings")
        if len(cards) > protocol.MAX_DIRECTORY_CARDS:
            raise LimitExceeded(f"at most {protocol.MAX_DIRECTORY_CARDS} cards per push")
        if not isinstance(chain, list) or not all(isinstance(c, bytes) for c in chain):
            raise Malformed("key_changes must be a list of byte strings")
        if len(chain) > protocol.MAX_KEY_CHANGES:
            raise LimitExceeded(f"at most {protocol.MAX_KEY_CHANGES} key changes per push")
        await self._charged(peer, len(cards) + len(chain))  # a change: up to 9 signatures
        node_id, public = certificates.verify_node_signing_certificate(cert_pem, self.ca_cert,
                                                              now=self.clock.host_now())
        if node_id != peer:
            raise Forbidden(f"peer {peer} presented the signing certificate of {node_id}")
        store = self.intake.store
        if chain or self.intake.keys.nodes.get(peer) != public:
            # A new key only through co-signed key changes (services/key_changes.py).
            await self.key_changes.receive(peer, chain, cert_pem, public)
        stored = refused = 0
        now = self.clock.now_ms()
        verified: list[tuple[identity.OfficerCard, bytes]] = []
        for raw in cards:
            try:
                verified.append((identity.verify_card(raw, node_public=public,
                                                      node_id=peer, now=now), raw))
            except LiaisonError as exc:
                refused += 1
                await store.audit(now=now, event="directory.refused", actor=peer,
                                  audit_detail=detail(code=exc.code, reason=exc.detail[:200]))
                log.warning("directory.card_refused", peer=peer, code=exc.code)
        # All in one write: the key cache's stamp moves once for the push, not once per
        # card (each move sends the envelopes being decided back to be decided again).
        for put in (await store.put_cards(verified, now=now, source=peer,
                                          grace_ms=self.key_grace_ms) if verified else []):
            if isinstance(put, LiaisonError):
                raise put  # as put_card's refusal did: the push's answer
            stored += put
        log.info("directory.received", peer=peer, cards=len(cards), stored=stored,
                 refused=refused)
        return msgpack_response({"stored": stored, "refused": refused})

    async def revocations(self, request: web.Request) -> web.Response:
        """Revocations pushed by the revoking node; each verified under its authority."""
        async with self._refusal_audited(request):
            peer = self._peer(request)
            async with self.guard.admit(peer):
                return await self._revocations(request, peer)

    async def _revocations(self, request: web.Request, peer: str) -> web.Response:
        body = await self.guard.body(
            peer, read_msgpack(request, self.max_body, protocol.REVOCATION_FIELDS))
        self._claims(peer, body["origin"])
        statements = body["statements"]
        if not isinstance(statements, list) or not all(isinstance(x, bytes)
                                                       for x in statements):
            raise Malformed("statements must be a list of byte strings")
        if len(statements) > protocol.MAX_REVOCATIONS:
            raise LimitExceeded(f"at most {protocol.MAX_REVOCATIONS} revocations per push")
        await self._charged(peer, len(statements))
        results = []
        store = self.intake.store
        for raw in statements:
            now = self.clock.now_ms()
            try:
                revocation = rotation.verify_revocation(raw, self.intake.keys.nodes)
                await self._check_key_owner(revocation)
                await store.keys.add_revocation(revocation, raw, now=now, forward_to=[],
                                                source=peer)
            except LiaisonError as exc:
                await store.audit(now=now, event="revocation.refused", actor=peer,
                                  audit_detail=detail(code=exc.code, reason=exc.detail[:200]))
                results.append([protocol.REFUSED, exc.code])
            else:
                results.append([protocol.ACCEPTED, ""])
        return msgpack_response({"results": results})

    async def _check_key_owner(self, revocation: rotation.Revocation) -> None:
        """The authority may revoke only keys of its own principal: a node revoking another
        node's officer's key by naming one of its own officers is refused. A node key is
        revoked only by a key change co-signed by the other national nodes, which travels
        with the node's certificate (``services/key_changes.py``), never alone."""
        if revocation.subject is rotation.Subject.NODE:
            raise CosignThreshold(f"a revocation of a node key of {revocation.principal} "
                                  "needs a key change co-signed by the other national nodes")
        principal = revocation.principal
        owner = await self.intake.store.keys.key_owner(revocation.key_id)
        if owner != principal:
            raise Forbidden(f"key {revocation.key_id.hex()} is not a key of "
                            f"{revocation.principal}")


def read_msgpack_optional(request: web.Request, max_bytes: int, fields: set[str],
                          optional: dict[str, Any]) -> Awaitable[dict[str, Any]]:
    """``read_msgpack`` with some fields that may be left out (their defaults given)."""
    async def read() -> dict[str, Any]:
        value = codec.unpack(await read_body(request, MSGPACK, max_bytes), what="request",
                             max_bytes=max_bytes)
        if not isinstance(value, dict):
            raise Malformed("request must be a map")
        extra = {k: value.pop(k) for k in optional if k in value}
        return {**codec.exact_map("request", value, fields), **optional, **extra}

    return read()
