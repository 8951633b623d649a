"""Live delivery: ``GET /api/v1/inbox/stream?after=SEQ``, a websocket of inbox entries.

How does a new envelope reach a connected officer?
    The store commits inbox rows (``NodeStore.accept``, for an officer's submission, a
    peer's relay or a node notice) and only then calls its ``on_inbox`` hook with the
    officers concerned; ``InboxWatch.notify`` sets the event their streams wait on. A woken
    stream reads the inbox *from the store*, by sequence number, after the last one it sent.
    The notification carries no data: it only says "look again", so a lost or doubled
    wake-up costs one query, never an entry.

Why nothing is skipped or repeated.
    Inbox sequence numbers are assigned by the node's single writer and committed in order,
    so a reader that has seen seq N has seen every committed seq below it. Each stream
    keeps ``after`` (the last seq it sent) and asks for ``seq > after``. The waiter is taken
    *before* the read: a commit notified after the read sets it; one committed before the
    read is in the read. A client that reconnects with ``after`` = the last seq it received
    picks up exactly where it left off (``NodeSession.follow``).

What is bounded, and who closes what.
    Concurrent streams per officer and in total (refused ``rate_limited``, 429, before the
    upgrade); the queue between store and socket (``queue_size`` messages); how long one
    message may wait for a slow consumer (``slow_consumer_s``, then close 4008); a peer
    that stops answering pings (aiohttp's heartbeat closes it); the token (re-checked on
    every wake-up and at least every ``poll_s``; once expired the stream closes 4401 and
    the client logs in again); frames from the client (the stream takes none: close 1003).
    The node's shutdown closes every stream with 1001.

Messages are JSON objects with the fields of ``GET /api/v1/inbox`` items, one per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from liaison_net.core.ids import id_to_text
from liaison_net.errors import LiaisonError, Malformed, RateLimited, Unauthorized
from liaison_net.store.node_store import InboxItem

log = structlog.get_logger("liaison.inbox_stream")

PAGE = 200
MAX_CLIENT_FRAME = 1024  # the client sends nothing but control frames
CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the client's close frame

# Close codes beyond RFC 6455's (4000-4999 are for applications).
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_SLOW_CONSUMER = 4008


def inbox_item_json(item: InboxItem) -> dict[str, Any]:
    """One inbox entry as the officer API shows it (the list and the stream alike)."""
    out: dict[str, Any] = {
        "seq": item.seq, "id": id_to_text(item.envelope_id), "sender": item.sender,
        "kind": item.kind, "precedence": item.precedence, "created": item.created,
        "relayed": item.relayed, "acked": item.acked, "retain_until": item.retain_until,
        "purged": item.purged}
    if item.purged is not None:
        out["tag"] = item.tag  # what the signed tag skeleton keeps (None if unreadable)
    return out


class InboxWatch:
    """Per-officer wake-ups for live streams. ``notify`` runs after a commit (the store's
    ``on_inbox`` hook); a stream takes ``waiter`` before it reads the store."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def waiter(self, officer: str) -> asyncio.Event:
        return self._events.setdefault(officer, asyncio.Event())

    def notify(self, officers: Iterable[str]) -> None:
        for officer in officers:
            event = self._events.pop(officer, None)
            if event is not None:
                event.set()

    def forget(self, officer: str) -> None:
        """The officer's last stream closed: nothing waits on the event any more."""
        self._events.pop(officer, None)


InboxOfficersAfter = Callable[[int], Awaitable[tuple[int, list[str]]]]


class InboxTail:
    """Wakes the streams of this process for inbox entries that *another* worker of the
    node committed (a node of several workers on one database, docs/operations.md).

    The store's ``on_inbox`` hook only fires in the process that committed, so a stream on
    worker B would otherwise see worker A's entries only at its next ``poll_s``. One loop
    per process reads the inbox by seq every ``interval_s`` (one indexed query, however
    many streams are open), from the last seq it has seen, and notifies the officers
    those entries are for. Like every wake-up it is only a hint: the streams read the
    store themselves, by their own cursor, so a wake-up late, doubled or for an entry
    already sent costs a query, never a gap or a repeat. (On PostgreSQL, LISTEN/NOTIFY
    in the committing transaction would make this quicker; this poll stays as the
    fallback.)"""

    PAGE = 1000

    def __init__(self, *, head: Callable[[], Awaitable[int]], after: InboxOfficersAfter,
                 watch: InboxWatch, interval_s: float) -> None:
        self.head = head
        self.after = after
        self.watch = watch
        self.interval_s = interval_s

    async def run(self) -> None:
        seen = await self.head()
        while True:
            await asyncio.sleep(self.interval_s)
            while True:
                try:
                    last, officers = await self.after(seen)
                except LiaisonError:
                    break  # the database is busy or gone for now: look again next time
                if officers:
                    self.watch.notify(officers)
                if last == seen:
                    break
                seen = last


@dataclass
class StreamSlots:
    """How many streams are open, per officer and in total; refuses past either limit."""

    per_officer: int
    total: int
    what: str = "live inbox streams"  # named in the refusals
    _open: dict[str, int] = field(default_factory=dict)

    @property
    def open_total(self) -> int:
        return sum(self._open.values())

    def take(self, officer: str) -> None:
        if self.open_total >= self.total:
            raise RateLimited(f"this node serves at most {self.total} {self.what}; "
                              "try again later")
        if self._open.get(officer, 0) >= self.per_officer:
            raise RateLimited(f"at most {self.per_officer} {self.what} per officer; "
                              "close one first")
        self._open[officer] = self._open.get(officer, 0) + 1

    def release(self, officer: str) -> int:
        """Give a slot back; the number of streams the officer still has open."""
        left = self._open.get(officer, 0) - 1
        if left > 0:
            self._open[officer] = left
        else:
            self._open.pop(officer, None)
        return max(left, 0)


@dataclass(frozen=True)
class StreamSettings:
    per_officer: int = 4
    total: int = 512
    queue_size: int = 64
    heartbeat_s: float = 20.0
    slow_consumer_s: float = 30.0
    poll_s: float = 30.0


class _Close(Exception):
    """Ends a stream's tasks; the handler closes the socket with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


InboxPage = Callable[[str, int, int], Awaitable[list[InboxItem]]]


class InboxStreams:
    """The stream route. ``authenticate`` maps a request to its officer (raising
    ``Unauthorized``); ``read_inbox(officer, after, limit)`` pages the store by seq."""

    def __init__(self, *, read_inbox: InboxPage, authenticate: Callable[[web.Request], str],
                 parse_after: Callable[[web.Request], int], watch: InboxWatch,
                 settings: StreamSettings | None = None) -> None:
        self.read_inbox = read_inbox
        self.authenticate = authenticate
        self.parse_after = parse_after
        self.watch = watch
        self.settings = settings or StreamSettings()
        self.slots = StreamSlots(self.settings.per_officer, self.settings.total)
        self._sockets: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        officer = self.authenticate(request)
        after = self.parse_after(request)
        ws = web.WebSocketResponse(heartbeat=self.settings.heartbeat_s,
                                   max_msg_size=MAX_CLIENT_FRAME, timeout=CLOSE_TIMEOUT_S)
        if not ws.can_prepare(request).ok:
            raise Malformed("the inbox stream is a websocket: send an Upgrade request")
        self.slots.take(officer)  # errors above and here are plain HTTP answers (4xx)
        try:
            await ws.prepare(request)
            self._sockets.add(ws)
            log.info("stream.opened", officer=officer, after=after)
            code, reason = await self._serve(ws, request, officer, after)
            if not ws.closed:
                await ws.close(code=code, message=reason.encode())
            log.info("stream.closed", officer=officer, code=code, reason=reason)
        finally:
            self._sockets.discard(ws)
            if self.slots.release(officer) == 0:
                self.watch.forget(officer)
        return ws

    async def close_all(self, app: web.Application) -> None:
        """On shutdown: tell every client to reconnect later, all at once (each close waits
        at most ``CLOSE_TIMEOUT_S`` for the client's answer)."""
        async with asyncio.TaskGroup() as tasks:
            for ws in list(self._sockets):
                tasks.create_task(_going_away(ws))

    async def _serve(self, ws: web.WebSocketResponse, request: web.Request, officer: str,
                     after: int) -> tuple[int, str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=self.settings.queue_size)
        outcome: tuple[int, str] = (WSCloseCode.INTERNAL_ERROR, "internal error")
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(ws), name="stream-read")
                tasks.create_task(self._pump(request, officer, after, queue),
                                  name="stream-pump")
                tasks.create_task(self._send(ws, queue), name="stream-send")
        except* _Close as group:
            first = _first_close(group)
            outcome = (first.code, first.reason)
        except* Exception:
            log.exception("stream.crashed", officer=officer)
        return outcome

    async def _read(self, ws: web.WebSocketResponse) -> None:
        """Consume what the client sends: control frames (pong, close) only. Reading is
        also what lets the heartbeat see pongs."""
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                raise _Close(WSCloseCode.UNSUPPORTED_DATA, "this stream takes no messages")
        broken = ws.exception()  # e.g. no pong within the heartbeat
        raise _Close(WSCloseCode.OK, f"connection ended: {broken}" if broken else "closed")

    async def _pump(self, request: web.Request, officer: str, after: int,
                    queue: asyncio.Queue[str]) -> None:
        """From the store into the queue, by seq, for as long as the stream lives."""
        while True:
            wake = self.watch.waiter(officer)  # before the read: see the module docstring
            try:
                self.authenticate(request)
                items = await self.read_inbox(officer, after, PAGE)
            except Unauthorized:
                raise _Close(CLOSE_TOKEN_EXPIRED, "token expired; log in again") from None
            except LiaisonError as exc:
                raise _Close(WSCloseCode.TRY_AGAIN_LATER, exc.code) from None
            for item in items:
                message = json.dumps(inbox_item_json(item), separators=(",", ":"))
                try:
                    async with asyncio.timeout(self.settings.slow_consumer_s):
                        await queue.put(message)
                except TimeoutError:
                    raise _Close(CLOSE_SLOW_CONSUMER, "consumer too slow") from None
                after = item.seq
            if len(items) == PAGE:
                continue
            try:
                async with asyncio.timeout(self.settings.poll_s):
                    await wake.wait()
            except TimeoutError:
                pass  # look again anyway, and re-check the token

    async def _send(self, ws: web.WebSocketResponse, queue: asyncio.Queue[str]) -> None:
        while True:
            message = await queue.get()
            try:
                async with asyncio.timeout(self.settings.slow_consumer_s):
                    await ws.send_str(message)
            except TimeoutError:
                raise _Close(CLOSE_SLOW_CONSUMER, "consumer too slow") from None
            except ConnectionError:
                raise _Close(WSCloseCode.GOING_AWAY, "connection lost") from None


async def _going_away(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")


def _first_close(group: BaseExceptionGroup[_Close]) -> _Close:
    for exc in group.exceptions:
        if isinstance(exc, _Close):
            return exc
        return _first_close(exc)
    raise AssertionError("empty exception group")  # pragma: no cover
