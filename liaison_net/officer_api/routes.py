"""The officer-facing API of a node: login, submit, inbox, fetch, acknowledge, directory,
and the live inbox stream (a websocket: ``client.inbox_stream``).

Officers authenticate by signing a single-use challenge with their card's signing key; the
node answers a short-lived bearer token, kept only in memory (a restart logs everyone out,
which is fine for a CLI that logs in again by itself) and compared in constant time. The
CLI keeps the token between commands (client.local_cache); `liaison logout` ends it here
too, and a key rotation ends every session of the officer, so a copy of the token taken
before either is worth nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiohttp import web

from liaison_net import timeline
from liaison_net.clock import Clock
from liaison_net.core import art25, codec, crypto, key_change, rotation
from liaison_net.core.audit import detail
from liaison_net.core.envelope import decode_header, read_frame
from liaison_net.core.identity import EnrolmentRequest, renewal, verify_card
from liaison_net.core.ids import check_officer_id, id_from_text, id_to_text, node_of
from liaison_net.core.login import CHALLENGE_BYTES, login_message
from liaison_net.core.pseudonym import KeyRing
from liaison_net.core.ratelimit import RefusalWindow
from liaison_net.errors import (
    BadSignature,
    Forbidden,
    KeyRetired,
    LiaisonError,
    LimitExceeded,
    Malformed,
    NotFound,
    Purged,
    RateLimited,
    Refused,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from liaison_net.http_common import (
    ENVELOPE,
    MSGPACK,
    UPDATES_HEADER,
    error_middleware,
    msgpack_response,
    read_body,
    read_json,
    read_msgpack,
)
from liaison_net.metrics import NodeMetrics
from liaison_net.officer_api.approvals import ApprovalRoutes, hold_json
from liaison_net.officer_api.inbox_stream import (
    InboxStreams,
    InboxWatch,
    StreamSettings,
    inbox_item_json,
)
from liaison_net.officer_api.submit_stream import SubmitStreams, SubmitStreamSettings
from liaison_net.services.intake import Intake

log = structlog.get_logger("liaison.client_api")

CHALLENGE_TTL_S = 60
MAX_PENDING_CHALLENGES = 10_000
MAX_TOKENS = 10_000
MAX_JSON_BODY = 4096
MAX_PAGE = 500
MAX_EVIDENCE = 1000  # statements about one envelope: 4 per recipient, and then some
MAX_JUSTIFICATION_CHARS = 200
MAX_BATCH_ENVELOPES = 256  # envelopes in one batch submit
MAX_BATCH_BYTES = 16 * 1024 * 1024  # one batch submit's whole body
_DIGITS = re.compile(r"[0-9]{1,19}")
REASON_HEADER = "X-Liaison-Reason"
LOGIN_AUDIT_WINDOW_S = 60.0  # at most one login.failed entry per officer per window


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _token_key(token: str) -> bytes:
    """What the sessions are kept under: the token's digest, never the token itself."""
    return hashlib.sha256(token.encode()).digest()


async def _read_batch_body(request: web.Request) -> bytes:
    """A batch body, streamed and bounded by ``MAX_BATCH_BYTES``: the app's own body bound
    (``client_max_size``) stays one envelope's for every other route."""
    if request.content_type != MSGPACK:
        raise UnsupportedMedia(f"expected Content-Type {MSGPACK}, "
                               f"got {request.content_type or 'none'}")
    too_big = LimitExceeded(f"request body exceeds {MAX_BATCH_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_BATCH_BYTES:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > MAX_BATCH_BYTES:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(request: web.Request) -> str | None:
    """The officer's reason for a consultation, if the client sent one (``X-Liaison-Reason``:
    UTF-8, percent-encoded, as header values are Latin-1), checked as the audit takes it."""
    raw = request.headers.get(REASON_HEADER)
    if raw is None:
        return None
    if len(raw) > 12 * art25.MAX_REASON_CHARS:  # every character percent-encoded UTF-8
        raise Malformed(f"{REASON_HEADER} is longer than {art25.MAX_REASON_CHARS} characters")
    try:
        text = urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise Malformed(f"{REASON_HEADER} must be percent-encoded UTF-8") from exc
    return art25.check_reason(text)


def submit_answer(envelope_id: bytes, *, duplicate: bool, held: bool) -> web.Response:
    """A single submit's 202 answer. Its JSON is written out, not encoded, on every submit:
    the same text as ``json_response`` of ``{"id", "status"[, "held"]}`` (json.dumps'
    separators; an id's text and the two statuses need no escaping), the same headers."""
    status = "duplicate" if duplicate else "accepted"
    held_text = ', "held": true' if held else ""
    return web.Response(
        text=f'{{"id": "{id_to_text(envelope_id)}", "status": "{status}"{held_text}}}',
        status=202, content_type="application/json")


@dataclass
class Session:
    officer: str
    expires: float


class ClientApi:
    def __init__(self, *, intake: Intake, metrics: NodeMetrics, token_ttl_s: int,
                 max_envelope_bytes: int, own_cert: Callable[[], bytes],
                 issue_card: Callable[[EnrolmentRequest, int], bytes],
                 key_grace_ms: int,
                 on_ack: Callable[[str, bytes], Awaitable[None]] | None = None,
                 pseudonym_ring: Callable[[], KeyRing] | None = None,
                 evaluations_per_hour: int = 30,
                 stream_settings: StreamSettings | None = None, clock: Clock,
                 submit_stream_settings: SubmitStreamSettings | None = None,
                 failed_loops: Callable[[], list[str]] = list,
                 own_chain: Callable[[], list[bytes]] = list) -> None:
        self.intake = intake
        self.own_chain = own_chain  # this node's applied key changes in effect (§19)
        self.clock = clock
        self.failed_loops = failed_loops  # background loops the supervisor gave up on
        self.store = intake.store
        self.node_id = intake.node_id
        self.metrics = metrics
        self.token_ttl_s = token_ttl_s
        self.max_envelope_bytes = max_envelope_bytes
        self.own_cert = own_cert  # this node's current signing certificate (PEM)
        self.issue_card = issue_card  # signs a card version with the node's current key
        self.key_grace_ms = key_grace_ms
        self.on_ack = on_ack  # e.g. a desk acknowledging a signal tells its sender
        self.pseudonym_ring = pseudonym_ring
        self.evaluations_per_hour = evaluations_per_hour
        self._challenges: dict[bytes, tuple[str, float]] = {}
        self._tokens: dict[bytes, Session] = {}  # SHA-256 of the token -> its session
        self._login_windows: dict[str, RefusalWindow] = {}  # whose failed logins, audited
        self._lock = asyncio.Lock()
        # Live delivery: the store's on_inbox hook calls inbox_watch.notify after a commit.
        self.inbox_watch = InboxWatch()
        self.streams = InboxStreams(
            read_inbox=lambda officer, after, limit: self.store.inbox(officer, after=after,
                                                                      limit=limit),
            authenticate=self._officer,
            parse_after=lambda request: self._int(request, "after", 0, 0, 1 << 62),
            watch=self.inbox_watch, settings=stream_settings)
        # Many submits on one websocket, each answered after its own commit.
        self.submit_streams = SubmitStreams(
            submit=lambda officer, raw: self.intake.submit(officer, raw, self.clock.now_ms()),
            authenticate=self._officer, max_envelope_bytes=max_envelope_bytes,
            settings=submit_stream_settings)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware],
                              client_max_size=self.max_envelope_bytes + 1024)
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/metrics", self.metrics_page)
        r.add_post("/api/v1/login/challenge", self.challenge)
        r.add_post("/api/v1/login", self.login)
        r.add_post("/api/v1/logout", self.logout)
        r.add_post("/api/v1/envelopes", self.submit)
        r.add_post("/api/v1/envelopes/batch", self.submit_batch)
        r.add_get("/api/v1/envelopes/stream", self.submit_streams.handle)  # before {id}
        r.add_get("/api/v1/inbox", self.inbox)
        r.add_get("/api/v1/inbox/stream", self.streams.handle)
        r.add_get("/api/v1/envelopes/{id}", self.fetch)
        r.add_post("/api/v1/envelopes/{id}/ack", self.ack)
        r.add_get("/api/v1/envelopes/{id}/status", self.status)
        r.add_get("/api/v1/envelopes/{id}/evidence", self.evidence)
        r.add_get("/api/v1/directory", self.directory)
        r.add_post("/api/v1/keys/rotate", self.rotate)
        r.add_post("/api/v1/pseudonym/evaluate", self.evaluate_pseudonym)
        r.add_get("/api/v1/signals", self.signals)
        r.add_get("/api/v1/requests", self.requests)
        if self.intake.holds is not None:  # four-eyes (issue 19)
            ApprovalRoutes(holds=self.intake.holds, store=self.store,
                           officer=self._officer).add(r)
        app.on_shutdown.append(self.streams.close_all)  # live streams: close with 1001
        app.on_shutdown.append(self.submit_streams.close_all)  # answer in flight, then 1001
        return app

    # --- health and metrics ---------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        # Loops given up on first: with a dead writer or reader the depth may not be known.
        failed = self.failed_loops()
        try:
            depth: dict[str, int] | None = await self.store.queue_depth()
        except Unavailable:
            depth, failed = None, sorted({*failed, "database-read"})
        # Storage: "full" while writes are refused for lack of space (disk or [store]
        # max_db_mb); the last time that was seen stays shown after it resumed.
        storage = self.store.db.storage
        # A witness's alarms about a peer's audit log (issue 18): a warning, not a fault
        # of this node, so they leave "status" alone.
        try:
            alarms = [{"node": a.node, "verdict": a.verdict, "size": a.size, "at": _iso(a.at)}
                      for a in await self.store.checkpoints.alarms()]
        except Unavailable:
            alarms = []
        return web.json_response({
            "audit_alarms": alarms,
            "status": "degraded" if storage.full or failed else "ok", "node": self.node_id,
            "failed_loops": failed,
            "queued": depth, "storage": "full" if storage.full else "ok",
            "storage_full_since": _iso(storage.since_ms),
            "storage_full_last_seen": _iso(storage.last_full_ms),
            "storage_refused_writes": storage.refused_writes})

    async def metrics_page(self, request: web.Request) -> web.Response:
        for peer in self.intake.peers:
            self.metrics.queue_depth.labels(peer=peer).set(0)
        for peer, depth in (await self.store.queue_depth()).items():
            self.metrics.queue_depth.labels(peer=peer).set(depth)
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    # --- login ----------------------------------------------------------------------------

    def _expire(self) -> None:
        now = time.monotonic()
        for key, (_, until) in list(self._challenges.items()):
            if until < now:
                del self._challenges[key]
        for token, session in list(self._tokens.items()):
            if session.expires < now:
                del self._tokens[token]

    async def challenge(self, request: web.Request) -> web.Response:
        body = await read_json(request, MAX_JSON_BODY, {"officer"})
        officer = check_officer_id(body["officer"])
        self._expire()
        if len(self._challenges) >= MAX_PENDING_CHALLENGES:
            raise RateLimited("too many pending logins; try again in a minute")
        challenge = crypto.random_bytes(CHALLENGE_BYTES)
        self._challenges[challenge] = (officer, time.monotonic() + CHALLENGE_TTL_S)
        return web.json_response({"challenge": challenge.hex(), "node": self.node_id})

    async def login(self, request: web.Request) -> web.Response:
        body = await read_json(request, MAX_JSON_BODY, {"officer", "challenge", "signature"})
        officer = check_officer_id(body["officer"])
        try:
            challenge = bytes.fromhex(str(body["challenge"]))
            signature = bytes.fromhex(str(body["signature"]))
        except ValueError as exc:
            raise Malformed("challenge and signature must be hex") from exc
        stage = "challenge"
        try:
            pending = self._challenges.pop(challenge, None)
            if pending is None or pending[0] != officer or pending[1] < time.monotonic():
                raise Unauthorized("unknown or expired challenge")
            stage = "node"
            if node_of(officer) != self.node_id:
                raise Unauthorized(f"{officer} is not an officer of node {self.node_id}")
            stage = "enrolment"
            keys = await self.store.officer_keys(officer)
            if keys is None:
                raise Unauthorized(f"{officer} is not enrolled on this node")
            stage = "signature"
            grace_until = await self._check_login_key(
                officer, keys[0], login_message(self.node_id, challenge), signature)
        except Refused as exc:
            await self._login_failed(officer, stage, exc.code, enrolled=stage == "signature")
            raise
        # A session opened with a superseded key ends with its grace, not after it.
        ttl_ms = self.token_ttl_s * 1000
        if grace_until is not None:
            ttl_ms = min(ttl_ms, grace_until - self.clock.now_ms())
        if len(self._tokens) >= MAX_TOKENS:
            self._expire()
            if len(self._tokens) >= MAX_TOKENS:
                raise RateLimited("too many sessions")
        token = secrets.token_urlsafe(32)
        self._tokens[_token_key(token)] = Session(officer, time.monotonic() + ttl_ms / 1000)
        log.info("officer.login", officer=officer)
        return web.json_response({"token": token,
                                  "expires_at": self.clock.now_ms() + ttl_ms})

    async def _login_failed(self, officer: str, stage: str, code: str, *,
                            enrolled: bool) -> None:
        """Audit a failed login (who was claimed, at which step, the error code; never the
        signature or challenge). A flood must not fill the disk: at most one entry per
        window (``LOGIN_AUDIT_WINDOW_S``) for each enrolled officer of this node and one for
        every other claimed id together, each counting the failures it stands for."""
        key = officer if enrolled else "*"
        window = self._login_windows.get(key)
        if window is None:
            if len(self._login_windows) >= MAX_TOKENS:
                self._login_windows.clear()  # a fresh start of every window, not a bypass
            window = self._login_windows[key] = RefusalWindow(LOGIN_AUDIT_WINDOW_S)
        failures = window.refuse(time.monotonic())
        self.metrics.refused.labels(code=f"login.{code}").inc()
        if failures is None:
            return
        try:
            await self.store.audit(now=self.clock.now_ms(), event="login.failed",
                                   actor=officer, audit_detail=detail(stage=stage, code=code,
                                                                      failures=failures))
        except LiaisonError as exc:  # storage trouble: the login is refused all the same
            log.warning("officer.login_failed_not_audited", officer=officer, code=exc.code)

    async def _check_login_key(self, officer: str, current: bytes, message: bytes,
                               signature: bytes) -> int | None:
        """The signature must verify under the officer's current key or, for a keystore
        copy from before a rotation, under a superseded key still in its grace period.

        A revoked key never logs in (Revoked names the reason), nor does any key of an
        officer whose current key is revoked; a superseded key past its grace end is
        refused as ``key_retired``, which names the rotation. Returns the grace end of the
        superseded key used, None for the current key."""
        now = self.clock.now_ms()
        candidates: list[tuple[bytes, int | None]] = [(current, None)]
        candidates += await self.store.keys.superseded_keys(officer)
        for public, grace_until in candidates:
            try:
                crypto.verify(public, message, signature)
            except BadSignature:
                continue
            # Revoked first: a revoked officer (current key) or a revoked old key.
            await self.store.keys.signer(crypto.signing_key_id(current), now=now)
            if grace_until is None:
                return None
            old_id = crypto.signing_key_id(public)
            if await self.store.keys.signer(old_id, now=now) is None or now >= grace_until:
                raise KeyRetired(
                    f"key {old_id.hex()} of {officer} was replaced by a key rotation and its "
                    f"grace period ended at {_iso(grace_until)}: this keystore is an old "
                    "copy; use the one `liaison officer rotate` wrote")
            log.info("officer.login_in_grace", officer=officer, key_id=old_id.hex())
            return grace_until
        raise Unauthorized("login signature does not verify")

    async def logout(self, request: web.Request) -> web.Response:
        """Forget the presented token: the CLI's cached copy is worthless from now on."""
        officer = self._officer(request)
        presented = request.headers["Authorization"][len("Bearer "):]
        forgotten = self._tokens.pop(_token_key(presented), None) is not None
        log.info("officer.logout", officer=officer)
        return web.json_response({"forgotten": forgotten})

    def _end_sessions(self, officer: str) -> None:
        for token in [t for t, s in self._tokens.items() if s.officer == officer]:
            del self._tokens[token]

    def _officer(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise Unauthorized("missing bearer token; log in first")
        presented = header[len("Bearer "):]
        # Header bytes that are not UTF-8 arrive as surrogates, which cannot be encoded; our
        # tokens are URL-safe ASCII, so anything else is simply not one of them.
        if not presented.isascii():
            raise Unauthorized("unknown or expired token; log in again")
        # One lookup by the token's SHA-256, not a constant-time compare against each of up
        # to MAX_TOKENS sessions per request: what a lookup's timing can tell is about the
        # digest, which says nothing about any token.
        found = self._tokens.get(_token_key(presented))
        if found is None or found.expires < time.monotonic():
            raise Unauthorized("unknown or expired token; log in again")
        return found.officer

    # --- envelopes ------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        raw = await read_body(request, ENVELOPE, self.max_envelope_bytes)
        read = timeline.now()
        outcome = await self.intake.submit(officer, raw, self.clock.now_ms())
        timeline.mark_at(read, "o.read", outcome.envelope_id)
        timeline.mark("o.answer", outcome.envelope_id)
        return submit_answer(outcome.envelope_id, duplicate=outcome.duplicate,
                             held=outcome.held)

    async def submit_batch(self, request: web.Request) -> web.Response:
        """Up to ``MAX_BATCH_ENVELOPES`` envelopes in one request, each checked as a single
        submit is, all admitted ones stored in one commit; one answer per envelope, in
        order (``accepted``, ``duplicate``, or ``refused`` with its code and detail)."""
        officer = self._officer(request)
        body = codec.exact_map("request", codec.unpack(
            await _read_batch_body(request), what="request", max_bytes=MAX_BATCH_BYTES),
            {"envelopes"})
        raws = body["envelopes"]
        if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
            raise Malformed("envelopes must be a list of envelopes (bytes)")
        if not 1 <= len(raws) <= MAX_BATCH_ENVELOPES:
            raise LimitExceeded(f"a batch holds 1 to {MAX_BATCH_ENVELOPES} envelopes, "
                                f"not {len(raws)}")
        for i, raw in enumerate(raws):
            if len(raw) > self.max_envelope_bytes:
                raise LimitExceeded(f"envelope {i} of the batch exceeds "
                                    f"{self.max_envelope_bytes} bytes")
        outcomes = await self.intake.submit_many(officer, raws, self.clock.now_ms())
        results: list[dict[str, str | None]] = []
        for outcome in outcomes:
            if isinstance(outcome, LiaisonError):
                results.append({"id": None, "status": "refused", **outcome.to_dict()})
            else:
                results.append({"id": id_to_text(outcome.envelope_id),
                                "status": "duplicate" if outcome.duplicate else "accepted"})
        return web.json_response({"results": results})

    @staticmethod
    def _id(request: web.Request) -> bytes:
        return id_from_text(request.match_info["id"])

    @staticmethod
    def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
        text = request.query.get(name, str(default))
        # ASCII digits only: str.isdigit() also takes "²" (int() refuses it) and "٣" (a
        # second spelling of 3); 19 digits bound int() and cover every 63-bit value.
        if not _DIGITS.fullmatch(text) or not lo <= int(text) <= hi:
            raise Malformed(f"query parameter {name} must be an integer {lo}-{hi}")
        return int(text)

    async def inbox(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        after = self._int(request, "after", 0, 0, 1 << 62)
        limit = self._int(request, "limit", 100, 1, MAX_PAGE)
        items = await self.store.inbox(officer, after=after, limit=limit)
        return web.json_response({
            "items": [inbox_item_json(i) for i in items],
            "next": items[-1].seq if items else after,
        })

    async def fetch(self, request: web.Request) -> web.Response:
        """The envelope's bytes for its sender or a recipient: a consultation (LED Art. 25),
        audited before the bytes leave, with the tag's purpose and the officer's reason
        (``X-Liaison-Reason``, percent-encoded UTF-8) if given. If the entry cannot be
        written, nothing is answered (503)."""
        officer = self._officer(request)
        eid = self._id(request)
        reason = _reason(request)
        if not await self.store.may_read(officer, eid):
            raise NotFound("no such envelope for you")
        # Past its retain_until only the tag skeleton is left: 410 purged, naming it.
        raw = await self.store.envelope_bytes(eid)
        limits = self.intake.limits  # the node's own: a stored envelope is within them
        fields = art25.justification(decode_header(read_frame(raw, limits).header_bytes,
                                                   limits))
        if reason is not None:
            fields["reason"] = reason
        await self.store.audit(now=self.clock.now_ms(), event="envelope.consulted",
                               actor=officer, audit_detail=detail(**fields), envelope_id=eid)
        # How many owner updates apply to it here (core/restriction.py): a hint, so that a
        # reader's client looks for them in the inbox (and checks them) only when there are.
        updates = await self.store.restrictions.count_of(eid)
        return web.Response(body=raw, content_type=ENVELOPE,
                            headers={UPDATES_HEADER: str(updates)} if updates else None)

    async def ack(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        if request.content_length:
            raise LimitExceeded("acknowledge takes no body")
        eid = self._id(request)
        acked = await self.store.ack(officer, eid, now=self.clock.now_ms())
        if acked and self.on_ack is not None:
            await self.on_ack(officer, eid)
        return web.json_response({"acked": acked})

    async def status(self, request: web.Request) -> web.Response:
        officer = self._officer(request)
        eid = self._id(request)
        if not await self.store.may_read(officer, eid):
            raise NotFound("no such envelope for you")
        hops = await self.store.hop_states(eid)
        local = await self.store.local_deliveries(eid)
        hold = await self.store.holds.get(eid)
        return web.json_response({
            "id": id_to_text(eid),
            "hops": {node: {"state": s, "reason": r} for node, (s, r) in hops.items()},
            "local": [{"officer": o, "relayed": rel, "acked": ack} for o, rel, ack in local],
            **({"hold": hold_json(hold)} if hold is not None else {}),
        })

    async def evidence(self, request: web.Request) -> web.Response:
        """The evidence envelopes in your inbox about one envelope, as they arrived (the
        client verifies them: the node can withhold evidence, never forge it)."""
        officer = self._officer(request)
        eid = self._id(request)
        if not await self.store.may_read(officer, eid):
            raise NotFound("no such envelope for you")
        await self.store.retention.check_not_purged(eid)  # past retention: 410 purged
        raws = await self.store.evidence_for(officer, eid, limit=MAX_EVIDENCE)
        return msgpack_response({"evidence": raws})

    async def directory(self, request: web.Request) -> web.Response:
        self._officer(request)
        cards = [card for *_, card in await self.store.directory()]
        certs = await self.store.node_certs()
        certs[self.node_id] = self.own_cert()
        revocations = await self.store.keys.revocation_statements()
        now = self.clock.now_ms()
        previous = [card for _, card in await self.store.previous_cards(now=now)]
        # Replaced node keys in their grace: cards they signed still verify at the client
        # while a peer's re-issued cards are on their way (they follow its new certificate).
        previous_certs = await self.store.keys.previous_node_certs(now=now)
        # Each node's co-signed key changes: a client believes a node key other than the
        # one it holds only through them (docs/protocol.md §19), never on a CA certificate.
        chains = {node: [raw for *_, raw in
                         (await self.store.keys.key_changes_of(node))[-key_change.MAX_CHAIN:]]
                  for node in certs if node != self.node_id}
        chains[self.node_id] = self.own_chain()[-key_change.MAX_CHAIN:]
        return msgpack_response({"node_certs": certs, "cards": cards,
                                 "previous_cards": previous,
                                 "previous_node_certs": previous_certs,
                                 "revocations": revocations,
                                 "key_changes": {n: c for n, c in chains.items() if c}})

    async def rotate(self, request: web.Request) -> web.Response:
        """An officer replaces both keys: the statement is signed by the current key and
        must be newer than the current card; the node answers with a new card version."""
        officer = self._officer(request)
        body = await read_msgpack(request, 2 * rotation.MAX_STATEMENT_BYTES, {"statement"})
        statement = body["statement"]
        if not isinstance(statement, bytes):
            raise Malformed("statement must be bytes")
        current = await self.store.officer_card(officer)
        if current is None:
            raise NotFound(f"{officer} is not in the directory")
        rot = rotation.verify_rotation(statement, old_public=current.signing_public,
                                       last_serial=current.version)
        if rot.subject is not rotation.Subject.OFFICER or rot.principal != officer:
            raise Forbidden("a rotation statement may only rotate your own keys")
        assert rot.new_encryption_public is not None  # checked by verify_rotation
        request_ = renewal(current, signing_public=rot.new_signing_public,
                           encryption_public=rot.new_encryption_public)
        raw_card = self.issue_card(request_, rot.serial)
        now = self.clock.now_ms()
        card = verify_card(raw_card, node_public=self.intake.keys.own.public,
                           node_id=self.node_id, now=now)
        await self.store.put_card(card, raw_card, now=now, source=officer,
                                  grace_ms=self.key_grace_ms)
        await self.store.audit(now=now, event="key.rotated", actor=officer,
                               audit_detail=detail(kind="officer", officer=officer,
                                                   old=rot.old_key_id.hex(),
                                                   new=card.signing_key_id.hex(),
                                                   version=card.version))
        log.info("key.rotated", kind="officer", officer=officer, version=card.version)
        self._end_sessions(officer)  # tokens issued to the old key end with it
        return web.json_response({"version": card.version,
                                  "signing_key_id": card.signing_key_id.hex(),
                                  "encryption_key_id": card.encryption_key_id.hex()})

    async def evaluate_pseudonym(self, request: web.Request) -> web.Response:
        """One blind OPRF evaluation under every network pseudonym key (a rotation window
        has two). The node never sees the identifiers; it counts and audits each call with
        the officer's stated justification, and refuses past the hourly limit."""
        officer = self._officer(request)
        if self.pseudonym_ring is None:
            raise NotFound("this node has no network pseudonym key")
        body = await read_msgpack(request, MAX_JSON_BODY, {"blinded", "justification"})
        blinded, justification = body["blinded"], body["justification"]
        if not isinstance(blinded, bytes) or len(blinded) != 32:
            raise Malformed("blinded must be a 32-byte point")
        if (not isinstance(justification, str) or not justification.strip()
                or len(justification) > MAX_JUSTIFICATION_CHARS):
            raise Malformed(f"justification must be 1-{MAX_JUSTIFICATION_CHARS} characters")
        ring = self.pseudonym_ring()
        evaluations = ring.evaluate_all(blinded)  # validates the point first
        now = self.clock.now_ms()
        if not await self.store.signals.record_evaluation(
                officer, justification, ring.current_key_id, now=now,
                window_start=now - 3_600_000, limit=self.evaluations_per_hour):
            self.metrics.refused.labels(code="rate_limited").inc()
            raise RateLimited(f"at most {self.evaluations_per_hour} pseudonym evaluations an "
                              "hour per officer")
        return msgpack_response({"evaluations": [[kid, point] for kid, point in evaluations]})

    async def signals(self, request: web.Request) -> web.Response:
        """Signals this officer raised, newest first, with the node's view of each."""
        officer = self._officer(request)
        raised = await self.store.signals.raised_by(officer, limit=MAX_PAGE)
        return web.json_response({"raised": [
            {"id": id_to_text(eid), "severity": severity, "created": created}
            for eid, severity, created in raised]})

    async def requests(self, request: web.Request) -> web.Response:
        """Requests this officer made or must answer, with their legal due times."""
        officer = self._officer(request)
        open_only = request.query.get("all") != "1"
        rows = await self.store.requests.for_officer(officer, open_only=open_only,
                                                     limit=MAX_PAGE)
        return web.json_response({"requests": [
            {"id": id_to_text(r.envelope_id), "direction": r.role, "sender": r.sender,
             "to": await self._addressees(r.envelope_id, r.role, r.officer),
             "urgency": r.urgency, "due": r.due, "answered": r.answered,
             "reply": id_to_text(r.reply_id) if r.reply_id else None,
             "escalated": r.escalated} for r in rows]})

    async def _addressees(self, envelope_id: bytes, role: str, officer: str) -> list[str]:
        """Whom a request is addressed to: the officer asking for an incoming one; for an
        outgoing one, the recipients in its header, signed and verified when this node
        accepted it (none once retention has purged it)."""
        if role != "outgoing":
            return [officer]
        try:
            raw = await self.store.envelope_bytes(envelope_id)
        except (NotFound, Purged):
            return []
        return [r.officer for r in decode_header(read_frame(raw).header_bytes).recipients]
