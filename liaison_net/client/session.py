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
says the token has expired; the token lives in memory only. Every request is bounded by
a timeout and every answer by a size.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from liaison_net import errors
from liaison_net.client.directory import MAX_DIRECTORY_BYTES, Directory, verify_directory
from liaison_net.client.keystore import Keystore, check_ca_pem
from liaison_net.core import codec, crypto
from liaison_net.core.envelope import Precedence
from liaison_net.core.ids import id_from_text, id_to_text
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.login import CHALLENGE_BYTES, login_message
from liaison_net.pki import node_hostname

T = TypeVar("T")

ENVELOPE_MEDIA_TYPE = "application/x-liaison-envelope"
MSGPACK_MEDIA_TYPE = "application/x-msgpack"
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_INBOX_PAGE = 500
MAX_TOKEN_CHARS = 4096
MAX_EVIDENCE_BYTES = 16 * 1024 * 1024  # every statement about one envelope
MAX_STREAM_MESSAGE = 64 * 1024  # one inbox entry as JSON is a few hundred bytes
STREAM_HEARTBEAT_S = 20.0  # ping the node; no pong within half of it: the stream is dead
_MAX_DETAIL_CHARS = 500
_CODE = re.compile(r"[a-z][a-z0-9_]{0,40}(?:\.[a-z][a-z0-9_]{0,40})?")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII, safe in an Authorization header
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BY_CODE: dict[str, type[errors.LiaisonError]] = {
    cls.code: cls for cls in errors.all_error_classes() if cls is not errors.LiaisonError
}


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


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    id: str
    status: str  # "accepted" or "duplicate"


@dataclass(frozen=True)
class InboxEntry:
    seq: int
    id: str
    sender: str
    kind: str
    precedence: str
    created: int  # ms
    relayed: int  # ms
    acked: int | None  # ms, or None while unacknowledged


@dataclass(frozen=True)
class InboxPage:
    items: list[InboxEntry]
    next: int


@dataclass(frozen=True)
class HopStatus:
    state: str
    reason: str | None


@dataclass(frozen=True)
class LocalStatus:
    officer: str
    relayed: int
    acked: int | None


@dataclass(frozen=True)
class EnvelopeStatus:
    id: str
    hops: dict[str, HopStatus]
    local: list[LocalStatus]


def error_from_answer(status: int, body: bytes) -> errors.LiaisonError:
    """The typed error for a 4xx/5xx answer, by its stable code, else by its status."""
    code, detail = "", ""
    try:
        value = json.loads(body)
        if isinstance(value, dict):
            raw_code, raw_detail = value.get("error"), value.get("detail")
            code = raw_code if isinstance(raw_code, str) else ""
            detail = raw_detail if isinstance(raw_detail, str) else ""
    except (ValueError, UnicodeDecodeError):
        pass
    detail = _clean(detail) or f"the node answered HTTP {status}"
    if not _CODE.fullmatch(code or ""):
        code = ""
    if code.startswith("policy."):
        return errors.PolicyRefused(detail, code=code)
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(detail)
    if status == 503:
        return errors.Unavailable(detail)
    fallback: type[errors.LiaisonError] = errors.Refused if status < 500 else errors.NodeFault
    return fallback(detail, code=code or None)


def _clean(text: str) -> str:
    """Server text shown on the officer's terminal: no control characters, bounded."""
    return _CONTROL.sub("?", text)[:_MAX_DETAIL_CHARS]


def _check_id(envelope_id: str) -> str:
    """Canonical text of an id typed by the officer (before it goes into a URL path)."""
    return id_to_text(id_from_text(envelope_id.strip()))


# --- the session -----------------------------------------------------------------------------


class NodeSession:
    """``async with NodeSession(keystore) as node: await node.inbox(...)``."""

    def __init__(self, keystore: Keystore, *, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.keystore = keystore
        self.base_url = keystore.node_url
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._ssl = officer_ssl_context(keystore.ca_cert_pem)
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None

    async def __aenter__(self) -> NodeSession:
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
        body = _json_map(answer, "login challenge")
        node = _field(body, "node", str, "login challenge")
        try:
            challenge = bytes.fromhex(_field(body, "challenge", str, "login challenge"))
        except ValueError:
            raise errors.Malformed("node sent a login challenge that is not hex") from None
        if len(challenge) != CHALLENGE_BYTES:
            raise errors.Malformed(f"login challenge must be {CHALLENGE_BYTES} bytes")
        # TLS already proved this is the home node (its certificate carries the server name
        # we asked for); the challenge must be for it too, or the signature is not ours to give.
        if node != ks.node:
            raise errors.Unauthorized(
                f"{self.base_url} offers a login to node {_clean(node)!r}, not to your home "
                f"node {ks.node!r}")
        signature = crypto.sign(ks.signing, login_message(node, challenge))
        answer = await self._call(
            "POST", "/api/v1/login", auth=False,
            json_body={"officer": ks.officer, "challenge": challenge.hex(),
                       "signature": signature.hex()})
        token = _field(_json_map(answer, "login"), "token", str, "login")
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise errors.Malformed("node sent a session token that is not a printable string")
        self._token = token

    async def submit(self, envelope: bytes) -> SubmitResult:
        answer = await self._call("POST", "/api/v1/envelopes", data=envelope,
                                     content_type=ENVELOPE_MEDIA_TYPE)
        body = _json_map(answer, "submit")
        status = _field(body, "status", str, "submit")
        if status not in ("accepted", "duplicate"):
            raise errors.Malformed(f"node answered submit with status {_clean(status)!r:.40}")
        return SubmitResult(_check_id(_field(body, "id", str, "submit")), status)

    async def inbox(self, *, after: int = 0, limit: int = MAX_INBOX_PAGE) -> InboxPage:
        if not 1 <= limit <= MAX_INBOX_PAGE or after < 0:
            raise errors.Malformed(f"inbox limit must be 1 to {MAX_INBOX_PAGE}, after >= 0")
        answer = await self._call("GET", f"/api/v1/inbox?after={after}&limit={limit}")
        body = _json_map(answer, "inbox")
        items = body.get("items")
        if not isinstance(items, list) or len(items) > limit:
            raise errors.Malformed("node answered inbox without a valid items list")
        return InboxPage([_inbox_entry(item) for item in items],
                         _int(body.get("next"), "inbox next"))

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
            self._token = None  # expired between calls: one fresh login, one retry
            await self.login()
            ws = await self._ws_open(path)
        entries = _stream_entries(ws, self.base_url)
        try:
            yield entries
        finally:
            await entries.aclose()
            await ws.close()

    async def _ws_open(self, path: str) -> aiohttp.ClientWebSocketResponse:
        if self._http is None:
            raise RuntimeError("NodeSession used outside `async with`")
        try:
            return await self._http.ws_connect(
                self.base_url + path, headers={"Authorization": f"Bearer {self._token}"},
                heartbeat=STREAM_HEARTBEAT_S, max_msg_size=MAX_STREAM_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                server_hostname=node_hostname(self.keystore.node))
        except aiohttp.WSServerHandshakeError as exc:
            raise _stream_refused(exc.status) from None
        except aiohttp.ClientConnectorCertificateError:
            raise errors.Unauthorized(
                f"the TLS certificate of {self.base_url} is not one the network CA issued "
                f"to node {self.keystore.node} for this host") from None
        except TimeoutError:
            raise errors.Unavailable(
                f"node at {self.base_url} did not answer within {self._timeout_s:g} s") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            reason = _clean(str(exc) or type(exc).__name__)
            raise errors.Unavailable(f"cannot reach node at {self.base_url}: {reason}") from None

    async def fetch(self, envelope_id: str) -> bytes:
        """The raw envelope bytes, unverified: pass them to sealing.verify."""
        answer = await self._call("GET", f"/api/v1/envelopes/{_check_id(envelope_id)}",
                                     max_bytes=DEFAULT_LIMITS.max_envelope_bytes)
        return answer

    async def ack(self, envelope_id: str) -> bool:
        """Acknowledge; True if this call did it, False if it was acknowledged before."""
        answer = await self._call("POST",
                                     f"/api/v1/envelopes/{_check_id(envelope_id)}/ack")
        return _field(_json_map(answer, "ack"), "acked", bool, "ack")

    async def status(self, envelope_id: str) -> EnvelopeStatus:
        answer = await self._call("GET",
                                     f"/api/v1/envelopes/{_check_id(envelope_id)}/status")
        body = _json_map(answer, "status")
        hops_raw = body.get("hops")
        local_raw = body.get("local")
        if not isinstance(hops_raw, dict) or not isinstance(local_raw, list):
            raise errors.Malformed("node answered status without hops map and local list")
        hops = {}
        for node, hop in hops_raw.items():
            if not isinstance(hop, dict):
                raise errors.Malformed("node answered status with a malformed hop")
            reason = hop.get("reason")
            hops[_clean(node)] = HopStatus(_clean(_field(hop, "state", str, "status hop")),
                                           _clean(reason) if isinstance(reason, str) else None)
        local = []
        for item in local_raw:
            if not isinstance(item, dict):
                raise errors.Malformed("node answered status with a malformed local entry")
            local.append(LocalStatus(_clean(_field(item, "officer", str, "status local")),
                                     _int(item.get("relayed"), "status relayed"),
                                     _opt_int(item.get("acked"), "status acked")))
        return EnvelopeStatus(_check_id(_field(body, "id", str, "status")), hops, local)

    async def evidence(self, envelope_id: str) -> list[bytes]:
        """The raw evidence envelopes about ``envelope_id`` in your inbox, unverified:
        ``client.evidence`` verifies each one before believing it."""
        answer = await self._call("GET",
                                  f"/api/v1/envelopes/{_check_id(envelope_id)}/evidence",
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
        return _json_map(answer, "rotation")

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
        body = _json_map(await self._call("GET", path), "requests")
        rows = body.get("requests")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise errors.Malformed("node answered a malformed request list")
        return rows

    async def raised_signals(self) -> list[dict[str, Any]]:
        body = _json_map(await self._call("GET", "/api/v1/signals"), "signals")
        raised = body.get("raised")
        if not isinstance(raised, list) or not all(isinstance(r, dict) for r in raised):
            raise errors.Malformed("node answered a malformed signal list")
        return raised

    async def directory_bytes(self) -> bytes:
        answer = await self._call("GET", "/api/v1/directory", max_bytes=MAX_DIRECTORY_BYTES)
        return answer

    async def directory(self, *, now: datetime) -> Directory:
        """The directory, keeping only what the network CA vouches for at ``now``."""
        raw = await self.directory_bytes()
        return verify_directory(raw, check_ca_pem(self.keystore.ca_cert_pem), now=now)

    # --- transport ----------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, json_body: Any = None,
                    data: bytes | None = None, content_type: str | None = None,
                    auth: bool = True, max_bytes: int = MAX_JSON_BYTES) -> bytes:
        """One request; with ``auth``, log in first if needed and again once on 401."""
        if auth and self._token is None:
            await self.login()
        try:
            return await self._send(method, path, json_body, data, content_type, auth,
                                    max_bytes)
        except errors.Unauthorized:
            if not auth:
                raise
            # The token may have expired between calls: one fresh login, one retry.
            self._token = None
            await self.login()
            return await self._send(method, path, json_body, data, content_type, auth,
                                    max_bytes)

    async def _send(self, method: str, path: str, json_body: Any, data: bytes | None,
                    content_type: str | None, auth: bool, max_bytes: int) -> bytes:
        if self._http is None:
            raise RuntimeError("NodeSession used outside `async with`")
        headers = {"Accept": "application/json, application/octet-stream, */*"}
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
        except aiohttp.ClientConnectorCertificateError:
            raise errors.Unauthorized(
                f"the TLS certificate of {self.base_url} is not one the network CA issued "
                f"to node {self.keystore.node} for this host") from None
        except aiohttp.ClientSSLError as exc:
            raise errors.Unavailable(
                f"TLS handshake with {self.base_url} failed: {_clean(str(exc))}") from None
        except TimeoutError:
            raise errors.Unavailable(
                f"node at {self.base_url} did not answer within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            reason = _clean(str(exc) or type(exc).__name__)
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


# --- shape checks on JSON answers ------------------------------------------------------------


def _json_map(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise errors.Malformed(f"node answered {what} with invalid JSON") from None
    if not isinstance(value, dict):
        raise errors.Malformed(f"node answered {what} with JSON that is not an object")
    return value


def _field(body: dict[str, Any], key: str, kind: type[T], what: str) -> T:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise errors.Malformed(f"node answered {what} without a valid {key!r}")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.Malformed(f"node sent an invalid {what}")
    return value


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None else _int(value, what)


async def _stream_entries(ws: aiohttp.ClientWebSocketResponse,
                          base_url: str) -> AsyncGenerator[InboxEntry, None]:
    """The entries the node pushes, until the stream closes (then ``Unavailable``)."""
    while True:
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            yield _inbox_entry(_json_map(str(message.data).encode(), "inbox stream"))
        elif message.type is aiohttp.WSMsgType.BINARY:
            raise errors.Malformed("node sent a binary frame on the inbox stream")
        elif message.type is aiohttp.WSMsgType.ERROR:
            raise errors.Unavailable(f"inbox stream from {base_url} broke: "
                                     f"{_clean(str(message.data) or 'connection lost')}")
        else:  # CLOSE, CLOSING, CLOSED
            reason = _clean(str(message.extra or "")) if message.type is \
                aiohttp.WSMsgType.CLOSE else ""
            raise errors.Unavailable(f"node at {base_url} closed the inbox stream "
                                     f"({ws.close_code}{': ' + reason if reason else ''})")


def _stream_refused(status: int) -> errors.LiaisonError:
    """A refused stream handshake, by status (its JSON body does not reach us)."""
    detail = f"the node refused the inbox stream (HTTP {status})"
    if status == 429:
        return errors.RateLimited(f"{detail}: too many live inbox streams are open for you "
                                  "or on the node; close one (another `liaison inbox "
                                  "--follow`?) and try again")
    by_status: dict[int, type[errors.LiaisonError]] = {
        400: errors.Malformed, 401: errors.Unauthorized, 403: errors.Forbidden,
        404: errors.NotFound, 503: errors.Unavailable}
    cls = by_status.get(status)
    if cls is not None:
        return cls(detail)
    return errors.Refused(detail) if status < 500 else errors.NodeFault(detail)


def _inbox_entry(item: object) -> InboxEntry:
    if not isinstance(item, dict):
        raise errors.Malformed("node sent an inbox item that is not an object")
    precedence = item.get("precedence")
    if isinstance(precedence, int) and not isinstance(precedence, bool):
        try:
            precedence = Precedence(precedence).label
        except ValueError:
            raise errors.Malformed("node sent an unknown precedence") from None
    if not isinstance(precedence, str):
        raise errors.Malformed("node sent an inbox item without precedence")
    return InboxEntry(
        seq=_int(item.get("seq"), "inbox seq"),
        id=_check_id(_field(item, "id", str, "inbox item")),
        sender=_clean(_field(item, "sender", str, "inbox item")),
        kind=_clean(_field(item, "kind", str, "inbox item")),
        precedence=_clean(precedence),
        created=_int(item.get("created"), "inbox created"),
        relayed=_int(item.get("relayed"), "inbox relayed"),
        acked=_opt_int(item.get("acked"), "inbox acked"),
    )
