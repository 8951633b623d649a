"""The officer's HTTP client for the home node's API: a thin adapter, as in httpcore.

Everything that decides something lives in the core (sealing, policy) or in
``client.directory``; this module only moves bytes to and from the node and translates,
once, what can go wrong on the way:

* a connection that fails, times out or breaks becomes ``Unavailable`` naming the node;
* a TLS certificate not issued by the network CA becomes ``Unauthorized``;
* an error answer ``{"error": code, "detail": text}`` becomes the errors.py class with that
  code (``policy.<rule>`` a ``PolicyRefused``), else ``Refused`` (4xx) or ``NodeFault`` (5xx);
* an answer that does not have the documented shape becomes ``Malformed``.

No aiohttp exception leaves this module. TLS trusts only the CA pinned in the keystore
(never the system store), TLS 1.3 only. Login is challenge-response with the officer's
signing key, done lazily on the first call that needs it and again, once, when the node
says the token has expired. The token lives in memory, and, given a ``LocalCache``, in a
sealed file beside the keystore for the next command (``client.local_cache``), bound to
the TLS certificate the login went over: every connection of a session must present the
certificate its token was first used with (``_TlsPin``), so a token never leaves for
another party, even one the CA vouches for. Every request is bounded by a timeout and
every answer by a size.

The answer records and their shape checks live in ``client.answers``, the websocket of
the live inbox in ``client.stream`` (reconnecting in ``client.follow``); both are
re-exported here, where the CLI has always imported them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import ssl
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp

from liaison_net import errors
from liaison_net.client.answers import (
    EnvelopeStatus,
    HopStatus,
    InboxEntry,
    InboxPage,
    LocalStatus,
    SubmitResult,
    batch_results,
    check_id,
    clean,
    count,
    envelope_status,
    error_from_answer,
    field,
    inbox_entry,
    json_map,
)
from liaison_net.client.directory import MAX_DIRECTORY_BYTES, Directory
from liaison_net.client.keystore import Keystore, check_ca_pem
from liaison_net.client.local_cache import LocalCache, holding
from liaison_net.client.stream import (
    MAX_STREAM_MESSAGE,
    STREAM_HEARTBEAT_S,
    open_socket,
    stream_entries,
)
from liaison_net.client.submit_stream import MAX_IN_FLIGHT as SUBMIT_STREAM_IN_FLIGHT
from liaison_net.client.submit_stream import SubmitStream
from liaison_net.core import codec, crypto
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.login import CHALLENGE_BYTES, login_message
from liaison_net.pki.certificates import node_hostname

__all__ = [
    "ENVELOPE_MEDIA_TYPE", "MAX_EVIDENCE_BYTES", "MAX_INBOX_PAGE", "MAX_JSON_BYTES",
    "MAX_STREAM_MESSAGE", "MAX_TOKEN_CHARS", "MSGPACK_MEDIA_TYPE", "STREAM_HEARTBEAT_S",
    "EnvelopeStatus", "HopStatus", "InboxEntry", "InboxPage", "LocalStatus", "NodeSession",
    "SubmitResult", "SubmitStream", "error_from_answer", "officer_ssl_context",
]

ENVELOPE_MEDIA_TYPE = "application/x-liaison-envelope"
UPDATES_HEADER = "Liaison-Updates"  # http_common.UPDATES_HEADER, as the node sends it
MSGPACK_MEDIA_TYPE = "application/x-msgpack"
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_INBOX_PAGE = 500
MAX_TOKEN_CHARS = 4096
MAX_EVIDENCE_BYTES = 16 * 1024 * 1024  # every statement about one envelope
MAX_BATCH_ENVELOPES = 256  # the node's bound on one batch submit (officer_api.routes)
MAX_BATCH_BYTES = 16 * 1024 * 1024
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII, safe in an Authorization header


def officer_ssl_context(ca_cert_pem: bytes) -> ssl.SSLContext:
    """TLS 1.3 client context trusting only the network CA (the keystore's ``ca_cert_pem``).

    Which node it reaches is checked per connection through the host name: every request
    names ``pki.node_hostname(home node)`` as the TLS server name, a name that only the home
    node's certificate carries. The in-memory twin of ``tls.officer_client_context``.
    """
    check_ca_pem(ca_cert_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_verify_locations(cadata=ca_cert_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise errors.ConfigError(f"the keystore's CA certificate cannot be loaded: {exc}") from None
    return ctx


class _TlsPin:
    """The node certificate (SHA-256 of its DER) a session's token is bound to.

    Checked inside the TLS handshake, after the CA and host name checks and before a byte
    of the request (and so the token) is written: ``SSLContext.sslobject_class`` is the
    hook asyncio's TLS transport calls. Unset, the first handshake sets it."""

    def __init__(self) -> None:
        self.expected: str | None = None

    def object_class(self) -> type[ssl.SSLObject]:
        pin = self

        class PinnedSSLObject(ssl.SSLObject):
            def do_handshake(self) -> None:
                super().do_handshake()
                der = self.getpeercert(binary_form=True) or b""
                seen = hashlib.sha256(der).hexdigest()
                if pin.expected is None:
                    pin.expected = seen
                elif not hmac.compare_digest(seen, pin.expected):
                    raise ssl.SSLCertVerificationError(
                        "the node presents another TLS certificate than the one this "
                        "session's token was issued over")

        return PinnedSSLObject


# --- the session -----------------------------------------------------------------------------


class NodeSession:
    """``async with NodeSession(keystore) as node: await node.inbox(...)``; with
    ``cache=``, the token of an earlier run is reused while valid, and this run's kept."""

    def __init__(self, keystore: Keystore, *, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, cache: LocalCache | None = None) -> None:
        self.keystore = keystore
        self.base_url = keystore.node_url
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._ssl = officer_ssl_context(keystore.ca_cert_pem)
        self._pin = _TlsPin()
        self._ssl.sslobject_class = self._pin.object_class()
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._cache = cache
        self._token_from_cache = False

    async def __aenter__(self) -> NodeSession:
        if self._cache is not None:
            cached = self._cache.load_token(self.keystore)
            if cached is not None:
                self._token, self._pin.expected = cached.token, cached.tls_identity
                self._token_from_cache = True
        self._http = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=4),
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._token = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- the API ------------------------------------------------------------------------

    async def login(self) -> None:
        """Prove the officer holds the signing key: sign the node's fresh challenge."""
        ks = self.keystore
        answer = await self._call(
            "POST", "/api/v1/login/challenge", json_body={"officer": ks.officer}, auth=False)
        body = json_map(answer, "login challenge")
        node = field(body, "node", str, "login challenge")
        try:
            challenge = bytes.fromhex(field(body, "challenge", str, "login challenge"))
        except ValueError:
            raise errors.Malformed("node sent a login challenge that is not hex") from None
        if len(challenge) != CHALLENGE_BYTES:
            raise errors.Malformed(f"login challenge must be {CHALLENGE_BYTES} bytes")
        # TLS already proved this is the home node (its certificate carries the server name
        # we asked for); the challenge must be for it too, or the signature is not ours to give.
        if node != ks.node:
            raise errors.Unauthorized(
                f"{self.base_url} offers a login to node {clean(node)!r}, not to your home "
                f"node {ks.node!r}")
        signature = crypto.sign(ks.signing, login_message(node, challenge))
        answer = await self._call(
            "POST", "/api/v1/login", auth=False,
            json_body={"officer": ks.officer, "challenge": challenge.hex(),
                       "signature": signature.hex()})
        body = json_map(answer, "login")
        token = field(body, "token", str, "login")
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise errors.Malformed("node sent a session token that is not a printable string")
        self._token = token
        expires = body.get("expires_at")
        if self._cache is not None and self._pin.expected is not None:
            self._cache.save_token(
                ks, token, tls_identity=self._pin.expected,
                node_expires=expires if type(expires) is int else None)

    def _forget_token(self) -> None:
        """The node refused the token (expired, restarted, logged out) or the connection
        it was bound to: drop it, its certificate pin and its cached copy."""
        self._token = None
        self._pin.expected = None
        if self._token_from_cache and self._cache is not None:
            self._cache.drop_token()
        self._token_from_cache = False

    async def logout(self) -> bool:
        """Ask the node to forget this session's token (if one is held, cached or not),
        and delete the cached copy; True if the node had it."""
        forgotten = False
        if self._token is not None:
            try:
                answer = await self._send("POST", "/api/v1/logout", None, None, None, True,
                                          MAX_JSON_BYTES)
                forgotten = field(json_map(answer, "logout"), "forgotten", bool, "logout")
            except errors.Unauthorized:
                pass  # the node no longer knows it: as good as forgotten
        self._token = None
        self._pin.expected = None
        if self._cache is not None:
            self._cache.drop_token()
        return forgotten

    async def submit(self, envelope: bytes) -> SubmitResult:
        answer = await self._call("POST", "/api/v1/envelopes", data=envelope,
                                     content_type=ENVELOPE_MEDIA_TYPE)
        body = json_map(answer, "submit")
        status = field(body, "status", str, "submit")
        if status not in ("accepted", "duplicate"):
            raise errors.Malformed(f"node answered submit with status {clean(status)!r:.40}")
        return SubmitResult(check_id(field(body, "id", str, "submit")), status,
                            held=body.get("held") is True)

    async def submit_many(self, envelopes: Sequence[bytes]
                          ) -> list[SubmitResult | errors.LiaisonError]:
        """Several envelopes in one request and one commit at the node: one result per
        envelope, in order (a refused one as its typed error, the others unaffected)."""
        if not 1 <= len(envelopes) <= MAX_BATCH_ENVELOPES:
            raise errors.LimitExceeded(f"a batch holds 1 to {MAX_BATCH_ENVELOPES} envelopes")
        body = codec.pack({"envelopes": list(envelopes)})
        if len(body) > MAX_BATCH_BYTES:
            raise errors.LimitExceeded(f"a batch holds at most {MAX_BATCH_BYTES} bytes")
        answer = await self._call("POST", "/api/v1/envelopes/batch", data=body,
                                  content_type=MSGPACK_MEDIA_TYPE)
        return batch_results(json_map(answer, "batch submit"), len(envelopes))

    async def inbox(self, *, after: int = 0, limit: int = MAX_INBOX_PAGE) -> InboxPage:
        if not 1 <= limit <= MAX_INBOX_PAGE or after < 0:
            raise errors.Malformed(f"inbox limit must be 1 to {MAX_INBOX_PAGE}, after >= 0")
        answer = await self._call("GET", f"/api/v1/inbox?after={after}&limit={limit}")
        body = json_map(answer, "inbox")
        items = body.get("items")
        if not isinstance(items, list) or len(items) > limit:
            raise errors.Malformed("node answered inbox without a valid items list")
        return InboxPage([inbox_entry(item) for item in items],
                         count(body.get("next"), "inbox next"))

    async def inbox_all(self, *, max_items: int = 100_000) -> list[InboxEntry]:
        """Every inbox entry, page by page (bounded, and stopping if a page goes nowhere)."""
        out: list[InboxEntry] = []
        after = 0
        while len(out) < max_items:
            page = await self.inbox(after=after, limit=MAX_INBOX_PAGE)
            out.extend(page.items)
            if not page.items or page.next <= after:
                break
            after = page.next
        return out[:max_items]

    def follow(self, after: int, *,
               on_retry: Callable[[errors.LiaisonError, float], None] | None = None,
               max_failures: int | None = None) -> AsyncGenerator[InboxEntry, None]:
        """Every inbox entry with seq > ``after``, then each new one as the node commits
        it, each exactly once, reconnecting by itself (``client.follow``). Use it as
        ``async with contextlib.aclosing(node.follow(after)) as entries: ...``."""
        from liaison_net.client.follow import follow_inbox  # it builds on this module

        return follow_inbox(self._stream, after, on_retry=on_retry, max_failures=max_failures)

    @contextlib.asynccontextmanager
    async def _stream(self, after: int) -> AsyncIterator[AsyncIterator[InboxEntry]]:
        """One websocket to the node's inbox stream; its entries end with ``Unavailable``
        when the connection closes or breaks, for whatever reason."""
        path = f"/api/v1/inbox/stream?after={after}"
        if self._token is None:
            await self.login()
        try:
            ws = await self._ws_open(path)
        except errors.Unauthorized:
            self._forget_token()  # expired between calls: one fresh login, one retry
            await self.login()
            ws = await self._ws_open(path)
        entries = stream_entries(ws, self.base_url)
        try:
            yield entries
        finally:
            await entries.aclose()
            await ws.close()

    @contextlib.asynccontextmanager
    async def submit_stream(self, *, max_in_flight: int = SUBMIT_STREAM_IN_FLIGHT
                            ) -> AsyncIterator[SubmitStream]:
        """Many envelopes in flight on one websocket (``client.submit_stream``):
        ``async with node.submit_stream() as s: result = await s.submit(envelope)``, each
        answered after its own commit, as ``submit`` is."""
        path = "/api/v1/envelopes/stream"
        if self._token is None:
            await self.login()
        try:
            ws = await self._ws_open(path, what="submit stream")
        except errors.Unauthorized:
            self._forget_token()  # expired between calls: one fresh login, one retry
            await self.login()
            ws = await self._ws_open(path, what="submit stream")
        stream = SubmitStream(ws, self.base_url, max_in_flight=max_in_flight,
                              answer_timeout_s=self._timeout_s)
        try:
            yield stream
        finally:
            await stream.close()

    async def _ws_open(self, path: str, *, what: str = "inbox stream"
                       ) -> aiohttp.ClientWebSocketResponse:
        if self._http is None:
            raise RuntimeError("NodeSession used outside `async with`")
        return await open_socket(self._http, self.base_url, path, token=self._token,
                                 node=self.keystore.node, timeout_s=self._timeout_s,
                                 what=what)

    async def fetch(self, envelope_id: str, *, reason: str | None = None) -> bytes:
        """The raw envelope bytes, unverified: pass them to sealing.verify. The node audits
        the consultation, with ``reason`` (why you read it) if given."""
        return (await self.fetch_noting_updates(envelope_id, reason=reason))[0]

    async def fetch_noting_updates(self, envelope_id: str, *,
                                   reason: str | None = None) -> tuple[bytes, bool]:
        """``fetch``, and whether the node says owner restriction updates apply to it (a
        hint: ``client.restrictions.standing`` finds and checks them)."""
        headers = ({"X-Liaison-Reason": urllib.parse.quote(reason, safe="")}
                   if reason is not None else None)
        seen: dict[str, str] = {}
        answer = await self._call("GET", f"/api/v1/envelopes/{check_id(envelope_id)}",
                                  max_bytes=DEFAULT_LIMITS.max_envelope_bytes,
                                  headers=headers, seen=seen)
        return answer, seen.get(UPDATES_HEADER.lower(), "0") not in ("", "0")

    async def ack(self, envelope_id: str) -> bool:
        """Acknowledge; True if this call did it, False if it was acknowledged before."""
        answer = await self._call("POST",
                                     f"/api/v1/envelopes/{check_id(envelope_id)}/ack")
        return field(json_map(answer, "ack"), "acked", bool, "ack")

    async def status(self, envelope_id: str) -> EnvelopeStatus:
        answer = await self._call("GET",
                                     f"/api/v1/envelopes/{check_id(envelope_id)}/status")
        return envelope_status(json_map(answer, "status"))

    async def evidence(self, envelope_id: str) -> list[bytes]:
        """The raw evidence envelopes about ``envelope_id`` in your inbox, unverified:
        ``client.evidence`` verifies each one before believing it."""
        answer = await self._call("GET",
                                  f"/api/v1/envelopes/{check_id(envelope_id)}/evidence",
                                  max_bytes=MAX_EVIDENCE_BYTES)
        body = codec.exact_map("evidence", codec.unpack(
            answer, what="evidence", max_bytes=MAX_EVIDENCE_BYTES), {"evidence"})
        raws = body["evidence"]
        if not isinstance(raws, list) or not all(isinstance(r, bytes) for r in raws):
            raise errors.Malformed("node answered evidence that is not a list of envelopes")
        return raws

    async def rotate_keys(self, statement: bytes) -> dict[str, Any]:
        """Hand a rotation statement to the home node; it answers the new card's version."""
        answer = await self._call("POST", "/api/v1/keys/rotate",
                                  data=codec.pack({"statement": statement}),
                                  content_type=MSGPACK_MEDIA_TYPE)
        return json_map(answer, "rotation")

    async def evaluate_pseudonym(self, blinded: bytes,
                                 justification: str) -> list[tuple[bytes, bytes]]:
        """The node's blind evaluations of ``blinded``: (key id, point) per network key."""
        answer = await self._call("POST", "/api/v1/pseudonym/evaluate",
                                  data=codec.pack({"blinded": blinded,
                                                   "justification": justification}),
                                  content_type=MSGPACK_MEDIA_TYPE)
        body = codec.exact_map("evaluation", codec.unpack(answer, what="evaluation",
                                                          max_bytes=4096), {"evaluations"})
        pairs = body["evaluations"]
        if (not isinstance(pairs, list) or not pairs
                or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], bytes)
                           and isinstance(p[1], bytes) for p in pairs)):
            raise errors.Malformed("node answered a malformed evaluation")
        return [(p[0], p[1]) for p in pairs]

    async def requests(self, *, include_answered: bool = False) -> list[dict[str, Any]]:
        path = "/api/v1/requests" + ("?all=1" if include_answered else "")
        body = json_map(await self._call("GET", path), "requests")
        rows = body.get("requests")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise errors.Malformed("node answered a malformed request list")
        return rows

    async def raised_signals(self) -> list[dict[str, Any]]:
        body = json_map(await self._call("GET", "/api/v1/signals"), "signals")
        raised = body.get("raised")
        if not isinstance(raised, list) or not all(isinstance(r, dict) for r in raised):
            raise errors.Malformed("node answered a malformed signal list")
        return raised

    # --- four-eyes (issue 19; client/approvals.py) ---------------------------------------

    async def approvals(self) -> list[dict[str, Any]]:
        """Held envelopes you sent or may decide, as the node lists them."""
        body = json_map(await self._call("GET", "/api/v1/approvals"), "approvals")
        items = body.get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise errors.Malformed("node answered a malformed approvals list")
        return items

    async def held_envelope(self, envelope_id: str) -> bytes:
        """A held envelope's raw bytes, unverified (the approver's client verifies them)."""
        answer = await self._call("GET", f"/api/v1/approvals/{check_id(envelope_id)}",
                                  max_bytes=DEFAULT_LIMITS.max_envelope_bytes)
        return answer

    async def decide_held(self, envelope_id: str, statement: bytes) -> dict[str, Any]:
        """Post a signed approval or rejection; the node answers the hold as decided."""
        answer = await self._call("POST", f"/api/v1/approvals/{check_id(envelope_id)}",
                                  data=statement, content_type=MSGPACK_MEDIA_TYPE)
        return json_map(answer, "approval")

    async def approval(self, envelope_id: str) -> bytes | None:
        """The approval that released ``envelope_id``, as it travelled, unverified."""
        answer = await self._call("GET",
                                  f"/api/v1/envelopes/{check_id(envelope_id)}/approval")
        body = codec.exact_map("approval", codec.unpack(answer, what="approval",
                                                        max_bytes=8192), {"approval"})
        value = body["approval"]
        if value is not None and not isinstance(value, bytes):
            raise errors.Malformed("node answered an approval that is not bytes")
        return value

    async def directory_bytes(self) -> bytes:
        answer = await self._call("GET", "/api/v1/directory", max_bytes=MAX_DIRECTORY_BYTES)
        return answer

    async def directory(self, *, now: datetime) -> Directory:
        """The directory, keeping only what the network CA vouches for at ``now`` and, for
        node keys, what co-signed key changes lead to from the keys held beside the
        keystore (``client.directory``)."""
        raw = await self.directory_bytes()
        return holding(self._cache, self.keystore, raw,
                       check_ca_pem(self.keystore.ca_cert_pem), now=now)

    # --- transport ----------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    data: bytes | None = None, content_type: str | None = None,
                    auth: bool = True, max_bytes: int = MAX_JSON_BYTES,
                    headers: dict[str, str] | None = None,
                    seen: dict[str, str] | None = None) -> bytes:
        """One request; with ``auth``, log in first if needed and again once on 401.
        ``seen``: filled with the answer's headers (names in lower case)."""
        if auth and self._token is None:
            await self.login()
        try:
            return await self._send(method, path, json_body, data, content_type, auth,
                                    max_bytes, headers, seen)
        except errors.Unauthorized:
            if not auth:
                raise
            # The token may have expired between calls: one fresh login, one retry.
            self._forget_token()
            await self.login()
            return await self._send(method, path, json_body, data, content_type, auth,
                                    max_bytes, headers, seen)

    async def _send(self, method: str, path: str, json_body: Any, data: bytes | None,
                    content_type: str | None, auth: bool, max_bytes: int,
                    extra: dict[str, str] | None = None,
                    seen: dict[str, str] | None = None) -> bytes:
        if self._http is None:
            raise RuntimeError("NodeSession used outside `async with`")
        headers = {"Accept": "application/json, application/octet-stream, */*", **(extra or {})}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = self.base_url + path
        try:
            async with self._http.request(method, url, json=json_body, data=data,
                                          headers=headers, allow_redirects=False,
                                          server_hostname=node_hostname(self.keystore.node)
                                          ) as resp:
                body = await _read_limited(resp, max_bytes)
                status = resp.status
                if seen is not None:
                    seen.update((k.lower(), v) for k, v in resp.headers.items())
        except aiohttp.ClientConnectorCertificateError:
            raise errors.Unauthorized(
                f"the TLS certificate of {self.base_url} is not one the network CA issued "
                f"to node {self.keystore.node} for this host") from None
        except aiohttp.ClientSSLError as exc:
            raise errors.Unavailable(
                f"TLS handshake with {self.base_url} failed: {clean(str(exc))}") from None
        except TimeoutError:
            raise errors.Unavailable(
                f"node at {self.base_url} did not answer within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            reason = clean(str(exc) or type(exc).__name__)
            raise errors.Unavailable(f"cannot reach node at {self.base_url}: {reason}") from None
        if status >= 400:
            raise error_from_answer(status, body)
        if status >= 300:
            raise errors.NodeFault(f"the node answered HTTP {status}, which it never should")
        return body


async def _read_limited(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise errors.LimitExceeded(f"node answer is {resp.content_length} bytes, "
                                   f"limit {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise errors.LimitExceeded(f"node answer exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
