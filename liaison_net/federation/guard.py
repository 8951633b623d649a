"""What one peer may cost this node: the `[federation]` limits, applied on the listener.

A peer with a valid certificate is still not trusted to be reasonable. Per peer node id
(read from its verified certificate, as everywhere on this port):

* **rate**: a token bucket (``core.ratelimit``) of ``envelopes_per_s``/``burst``. A request
  takes one token before its body is read and the rest of its cost (``max(1, items)``)
  once decoded; an empty bucket is ``429 rate_limited``, nothing stored.
* **in flight**: at most ``in_flight_per_peer`` of its requests handled at once, else 429.
* **connections**: at most ``connections_per_peer`` open; one more is aborted right after
  its TLS handshake (the first moment its certificate is known), with no HTTP answer.
* **time**: the TLS handshake within ``handshake_timeout_s`` (``ssl_handshake_timeout`` of
  ``loop.create_server``, which aiohttp's ``TCPSite`` does not expose, hence ``GuardedSite``);
  the request head within ``header_timeout_s``; the body within ``body_timeout_s`` (``408
  request_timeout``, then the connection is closed).

aiohttp's server has no header-read ("slow request") timeout. Its ``RequestHandler`` does
start its keep-alive timer when the connection is made and restart it after each answer,
and when the timer fires while the handler still waits for a complete request head it closes
the connection. So ``keepalive_timeout = header_timeout_s`` bounds a dribbled head (and the
idle time between requests); tests/integration/test_hostile_peer.py proves it on the real
listener, so an aiohttp upgrade that changed this would fail there.

Refusals are audited as ``peer.limited``, at most once per peer and limit per
``audit_window_s``
(``core.ratelimit.RefusalWindow``): an audit row per refused flood request would let the
flood fill the disk through the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import structlog
from aiohttp import web
from yarl import URL

from liaison_net.config import FederationLimits
from liaison_net.core.audit import detail
from liaison_net.core.ratelimit import RefusalWindow, TokenBucket
from liaison_net.errors import LiaisonError, RateLimited, RequestTimeout
from liaison_net.federation.tls import peer_node_id

log = structlog.get_logger("liaison.federation.guard")

T = TypeVar("T")
#: Writes one ``peer.limited`` audit entry: (peer, detail JSON).
AuditLimited = Callable[[str, str], Awaitable[None]]
#: After a refused request, how long aiohttp may still read (and drop) the rest of its body
#: before closing: lets an honest client read the refusal instead of a reset (aiohttp's
#: default is 10 s).
LINGER_S = 2.0


class PeerGuard:
    def __init__(self, limits: FederationLimits, *, audit: AuditLimited,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._audit = audit
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._windows: dict[tuple[str, str], RefusalWindow] = {}
        self._in_flight: dict[str, int] = {}
        self.connections: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the listener ---------------------------------------------------------------------

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the federation listener's ``web.AppRunner``."""
        return {"keepalive_timeout": self.limits.header_timeout_s,
                "lingering_time": LINGER_S, "shutdown_timeout": 2.0}

    def site(self, runner: web.BaseRunner, host: str, port: int, *,
             ssl_context: Any, backlog: int) -> GuardedSite:
        return GuardedSite(runner, host, port, guard=self, ssl_context=ssl_context,
                           backlog=backlog)

    # --- connections ----------------------------------------------------------------------

    def connection_opened(self, peer: str) -> bool:
        open_now = self.connections.get(peer, 0)
        if open_now >= self.limits.connections_per_peer:
            self._refused_soon(peer, "connections",
                               f"{open_now} connections open, limit "
                               f"{self.limits.connections_per_peer}")
            return False
        self.connections[peer] = open_now + 1
        return True

    def connection_closed(self, peer: str) -> None:
        left = self.connections.get(peer, 0) - 1
        if left > 0:
            self.connections[peer] = left
        else:
            self.connections.pop(peer, None)

    # --- requests -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admit(self, peer: str) -> AsyncIterator[None]:
        """Hold one of the peer's in-flight slots and one token, or refuse with 429."""
        busy = self._in_flight.get(peer, 0)
        if busy >= self.limits.in_flight_per_peer:
            await self._refuse(peer, "in_flight", f"{busy} requests of {peer} in flight, "
                               f"limit {self.limits.in_flight_per_peer}")
        if not self._bucket(peer).take(1, self._clock()):
            await self._refuse(peer, "rate", self._over_rate(peer, 1))
        self._in_flight[peer] = busy + 1
        try:
            yield
        finally:
            left = self._in_flight.get(peer, 1) - 1
            if left > 0:
                self._in_flight[peer] = left
            else:
                self._in_flight.pop(peer, None)

    async def charge(self, peer: str, items: int) -> None:
        """The rest of a request's cost once its item count is known (one was taken)."""
        if items > 1 and not self._bucket(peer).take(items - 1, self._clock()):
            await self._refuse(peer, "rate", self._over_rate(peer, items - 1))

    async def body(self, peer: str, reading: Awaitable[T]) -> T:
        """``reading`` (the request body), within ``body_timeout_s``, else 408."""
        limit = self.limits.body_timeout_s
        try:
            async with asyncio.timeout(limit) as timer:
                return await reading
        except TimeoutError:
            if not timer.expired():
                raise
        await self._refuse(peer, "body_timeout", f"request body not received within {limit} s",
                           error=RequestTimeout)

    # --- refusing -------------------------------------------------------------------------

    def _bucket(self, peer: str) -> TokenBucket:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket.full(
                self.limits.envelopes_per_s, self.limits.burst, self._clock())
        return bucket

    def _over_rate(self, peer: str, cost: int) -> str:
        wait = self._bucket(peer).wait_s(cost, self._clock())
        return (f"{peer} is over {self.limits.envelopes_per_s:g} envelopes/s "
                f"(burst {self.limits.burst}); retry in {wait:.2f} s")

    def _report(self, peer: str, limit: str) -> int | None:
        window = self._windows.get((peer, limit))
        if window is None:
            window = self._windows[peer, limit] = RefusalWindow(self.limits.audit_window_s)
        return window.refuse(self._clock())

    async def _refuse(self, peer: str, limit: str, reason: str,
                      error: type[LiaisonError] = RateLimited) -> NoReturn:
        reported = self._report(peer, limit)
        if reported is not None:
            await self._write_audit(peer, limit, reason, reported)
        raise error(reason)

    def _refused_soon(self, peer: str, limit: str, reason: str) -> None:
        """A refusal outside a request (a connection): audited in the background."""
        reported = self._report(peer, limit)
        if reported is not None:
            task = asyncio.get_running_loop().create_task(
                self._write_audit(peer, limit, reason, reported))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write_audit(self, peer: str, limit: str, reason: str, refused: int) -> None:
        log.warning("peer.limited", peer=peer, limit=limit, refused=refused)
        try:
            await self._audit(peer, detail(limit=limit, refused=refused, reason=reason[:200],
                                           window_s=self.limits.audit_window_s))
        except LiaisonError as exc:  # our storage failing must not turn a 429 into a 5xx
            log.warning("peer.limited_not_audited", peer=peer, code=exc.code)


class _PeerConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted against its peer's connection limit.

    ``connection_made`` runs once the TLS handshake is done, so the certificate is verified
    and names the peer; a connection over the limit is aborted before aiohttp sees it.
    """

    def __init__(self, inner: asyncio.Protocol, guard: PeerGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._peer: str | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        try:
            peer = peer_node_id(transport.get_extra_info("ssl_object"))
        except LiaisonError:
            peer = "?"  # cannot happen with CERT_REQUIRED; counted under one shared name
        if not self._guard.connection_opened(peer):
            self._refused = True
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:  # pragma: no cover - a stream server always hands over a Transport
                transport.close()
            return
        self._peer = peer
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is not None:
            self._guard.connection_closed(self._peer)
            self._peer = None
        if not self._refused:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._refused else self._inner.eof_received()

    def pause_writing(self) -> None:
        if not self._refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with a TLS handshake timeout and per-peer connection counting."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: PeerGuard,
                 ssl_context: Any, backlog: int) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return str(URL.build(scheme="https", host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite.__init__ refuses a runner not set up
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _PeerConnection(server(), self._guard), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog, reuse_address=True,
            ssl_handshake_timeout=self._guard.limits.handshake_timeout_s)
