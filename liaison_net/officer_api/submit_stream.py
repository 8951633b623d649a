"""Many submits on one websocket: ``GET /api/v1/envelopes/stream`` (what AMQP publisher
confirms are to a feeding system).

Why a stream beside ``POST /api/v1/envelopes``.
    A system that feeds the node (a national alerting system, the bench) keeps many
    envelopes in flight. One HTTPS request per envelope costs the origin a request's
    parsing, routing and answer on top of the envelope's own work; on one websocket an
    envelope costs a frame. Each envelope is still answered on its own, after its own
    commit, never as part of a batch: one refused envelope does not touch the others.

Frames.
    The client sends binary frames: an 8-byte big-endian correlation number of its choice,
    then one envelope (the bytes ``POST /api/v1/envelopes`` takes as its body). The node
    answers each with one text frame, a JSON object: ``n`` (that number), ``http`` (the
    status the POST would have answered), and exactly the POST's fields (``id``, ``status``
    and ``held`` if held; or ``error`` and ``detail``). Answers come in the order commits
    finish, not the order of frames: match them by ``n``.

When an answer is written.
    Only once ``Intake.submit`` has returned, so after the envelope's commit
    (``synchronous=FULL``): envelopes arriving in the same loop turn share the writer's
    group commit, as concurrent POSTs do, and each answer waits for its own.

What is bounded, and who closes what.
    Streams per officer and in total (refused ``rate_limited``, 429, before the upgrade,
    as the inbox stream's); a frame's size (an envelope's limit plus the same slack as the
    POST's body; an envelope over the limit but within the slack is answered
    ``limit_exceeded`` as the POST answers it, a bigger frame closes the stream 1009);
    envelopes in flight (``max_in_flight`` per stream, and ``max_bytes_in_flight`` of
    envelope bytes over all streams: past either the node stops reading, so TCP pushes
    back on the client); how long an answer may wait for a client that does not
    read (``slow_consumer_s``, then close 4008); idle time (``idle_s`` without a frame, then
    close 4408); the token (checked on every frame and at least every ``token_check_s``:
    close 4401, after answering what was taken); a text frame (close 1003) or a frame too
    short to carry a number (close 1007). The node's stop reads no further frames, answers
    every envelope in flight once committed, then closes 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from liaison_net.core.ids import id_to_text
from liaison_net.errors import LiaisonError, LimitExceeded, Malformed, Unauthorized
from liaison_net.officer_api.inbox_stream import (
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    StreamSlots,
)
from liaison_net.store.envelope_store import AcceptOutcome

log = structlog.get_logger("liaison.submit_stream")

NUMBER_BYTES = 8  # the client's correlation number, big-endian, before the envelope
BODY_SLACK = 1024  # as the app's client_max_size over an envelope's limit (routes.py)
CLOSE_TIMEOUT_S = 2.0  # how long a close waits for the client's close frame
STOP_DRAIN_S = 10.0  # on the node's stop: how long in-flight envelopes may take to answer

# Close codes beyond RFC 6455's (4000-4999 are for applications).
CLOSE_IDLE = 4408

Submit = Callable[[str, bytes], Awaitable[AcceptOutcome]]


@dataclass(frozen=True)
class SubmitStreamSettings:
    per_officer: int = 8
    total: int = 64
    max_in_flight: int = 64
    #: Envelope bytes held in flight by all submit streams together: past it no stream
    #: reads another frame until some are answered. Each stream checks before it reads,
    #: so at most ``total`` frames (one per stream) go past it: with the defaults and a 1
    #: MiB envelope limit, at most 64 + 64 MiB held, whatever the streams send.
    max_bytes_in_flight: int = 64 * 1024 * 1024
    heartbeat_s: float = 20.0
    slow_consumer_s: float = 30.0
    idle_s: float = 300.0
    token_check_s: float = 30.0


def accepted_answer(number: int, outcome: AcceptOutcome) -> str:
    """The answer frame of an envelope taken: POST's 202 body, with ``n`` and ``http``.
    Written out, not encoded (an id's text and the statuses need no escaping)."""
    status = "duplicate" if outcome.duplicate else "accepted"
    held = ',"held":true' if outcome.held else ""
    return (f'{{"n":{number},"http":202,"id":"{id_to_text(outcome.envelope_id)}",'
            f'"status":"{status}"{held}}}')


def refused_answer(number: int, exc: LiaisonError) -> str:
    """The answer frame of an envelope refused: POST's error body and status."""
    return json.dumps({"n": number, "http": exc.http_status, **exc.to_dict()},
                      separators=(",", ":"))


def fault_answer(number: int) -> str:
    """What the POST answers for a fault nobody foresaw (http_common's middleware)."""
    return json.dumps({"n": number, "http": 500, "error": "node_fault",
                       "detail": "internal error"}, separators=(",", ":"))


class ByteBudget:
    """Bytes held by every submit stream's frames in flight, against one limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def room(self) -> None:
        """Return once the streams hold less than the limit."""
        while self.used >= self.limit:
            self._freed.clear()
            await self._freed.wait()

    def take(self, size: int) -> None:
        self.used += size

    def give(self, size: int) -> None:
        self.used -= size
        self._freed.set()


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Stream:
    """One open submit stream: reads frames while fewer than ``max_in_flight`` are in
    flight, submits each in its own task, and answers each after its commit."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, officer: str, *,
                 streams: SubmitStreams) -> None:
        self.ws = ws
        self.request = request
        self.officer = officer
        self.streams = streams
        self.settings = streams.settings
        self.room = asyncio.Semaphore(self.settings.max_in_flight)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.outcome: tuple[int, str] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    def end(self, code: int, reason: str) -> None:
        """Read no further frame; the stream closes with ``code`` once in-flight answers
        are written. The first reason given wins."""
        if self.outcome is None:
            self.outcome = (code, reason)
        if self.reader is not None:
            self.reader.cancel()

    async def serve(self) -> tuple[int, str]:
        self.reader = asyncio.create_task(self._read(), name="submit-stream-read")
        try:
            await self.reader
        except asyncio.CancelledError:
            if self.outcome is None:  # cancelled from outside: the handler itself
                self.reader.cancel()
                raise
        except _Close as close:
            self.end(close.code, close.reason)
        except Exception:
            log.exception("submit_stream.crashed", officer=self.officer)
            self.end(WSCloseCode.INTERNAL_ERROR, "internal error")
        if self.in_flight:  # each answers after its own commit (or its send gives up)
            await asyncio.wait(set(self.in_flight))
        assert self.outcome is not None
        return self.outcome

    async def _read(self) -> None:
        settings = self.settings
        last_frame = last_check = time.monotonic()
        while True:
            await self.room.acquire()  # backpressure: no frame read past the bound
            await self.streams.budget.room()  # nor past the node's bytes in flight
            while True:
                now = time.monotonic()
                if now - last_check >= settings.token_check_s:
                    self._check_token()
                    last_check = now
                wait = min(settings.idle_s - (now - last_frame),
                           settings.token_check_s - (now - last_check))
                if wait <= 0:
                    raise _Close(CLOSE_IDLE, "no frame for too long")
                try:
                    # Our own deadline, not ``receive(timeout=)``: aiohttp restarts that
                    # timeout at every ping or pong it answers inside ``receive``, so the
                    # heartbeat's pongs (or a client's pings) would keep an idle stream,
                    # and an expired token, open for ever.
                    async with asyncio.timeout(wait):
                        message = await self.ws.receive()
                except TimeoutError:
                    continue
                break
            last_frame = time.monotonic()
            if message.type is WSMsgType.BINARY:
                self._check_token()
                self._take(message.data)
            elif message.type is WSMsgType.TEXT:
                raise _Close(WSCloseCode.UNSUPPORTED_DATA,
                             "frames are binary: a number and an envelope")
            else:  # CLOSE, CLOSING, CLOSED, ERROR (a frame over the limit, a lost peer)
                broken = self.ws.exception()
                raise _Close(WSCloseCode.OK,
                             f"connection ended: {broken}" if broken else "closed")

    def _check_token(self) -> None:
        try:
            self.streams.authenticate(self.request)
        except Unauthorized:
            raise _Close(CLOSE_TOKEN_EXPIRED, "token expired; log in again") from None

    def _take(self, frame: bytes) -> None:
        if len(frame) < NUMBER_BYTES:
            raise _Close(WSCloseCode.INVALID_TEXT,
                         f"a frame is a {NUMBER_BYTES}-byte number, then an envelope")
        number = int.from_bytes(frame[:NUMBER_BYTES], "big")
        size = len(frame)
        self.streams.budget.take(size)
        task = asyncio.create_task(self._one(number, frame[NUMBER_BYTES:]))
        self.in_flight.add(task)
        task.add_done_callback(functools.partial(self._finished, size))

    def _finished(self, size: int, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.room.release()
        self.streams.budget.give(size)

    async def _one(self, number: int, raw: bytes) -> None:
        limit = self.streams.max_envelope_bytes
        try:
            if len(raw) > limit:  # the POST's words for a body over the limit
                raise LimitExceeded(f"request body exceeds {limit} bytes")
            outcome = await self.streams.submit(self.officer, raw)
            answer = accepted_answer(number, outcome)
        except LiaisonError as exc:
            if exc.http_status >= 500:
                log.warning("submit_stream.failed", officer=self.officer, code=exc.code)
            answer = refused_answer(number, exc)
        except Exception:
            log.exception("submit_stream.submit_crashed", officer=self.officer)
            answer = fault_answer(number)
        if self.ws.closed:
            return  # the client left: it finds the envelope by its id (committed or not)
        try:
            async with asyncio.timeout(self.settings.slow_consumer_s):
                await self.ws.send_str(answer)
        except TimeoutError:
            self.end(CLOSE_SLOW_CONSUMER, "consumer too slow")
        except ConnectionError:
            self.end(WSCloseCode.GOING_AWAY, "connection lost")


class SubmitStreams:
    """The route. ``authenticate`` maps a request to its officer (raising
    ``Unauthorized``); ``submit(officer, raw)`` is the single submit, returning after the
    commit (``Intake.submit`` at the node's clock)."""

    def __init__(self, *, submit: Submit, authenticate: Callable[[web.Request], str],
                 max_envelope_bytes: int,
                 settings: SubmitStreamSettings | None = None) -> None:
        self.submit = submit
        self.authenticate = authenticate
        self.max_envelope_bytes = max_envelope_bytes
        self.settings = settings or SubmitStreamSettings()
        self.slots = StreamSlots(self.settings.per_officer, self.settings.total,
                                 what="submit streams")
        self.budget = ByteBudget(self.settings.max_bytes_in_flight)
        self._streams: set[_Stream] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        officer = self.authenticate(request)
        # No per-message deflate: an envelope is ciphertext, which does not shrink (on the
        # bench, deflate on or off made no difference to the origin's CPU that the noise
        # did not hide: docs/performance.md, lane stream16).
        ws = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat_s, timeout=CLOSE_TIMEOUT_S, compress=False,
            max_msg_size=NUMBER_BYTES + self.max_envelope_bytes + BODY_SLACK)
        if not ws.can_prepare(request).ok:
            raise Malformed("the submit stream is a websocket: send an Upgrade request")
        self.slots.take(officer)  # errors above and here are plain HTTP answers (4xx)
        stream = _Stream(ws, request, officer, streams=self)
        try:
            await ws.prepare(request)
            self._streams.add(stream)
            log.info("submit_stream.opened", officer=officer)
            code, reason = await stream.serve()
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.close(code=code, message=reason.encode())
            log.info("submit_stream.closed", officer=officer, code=code, reason=reason)
        finally:
            stream.done.set()
            self._streams.discard(stream)
            self.slots.release(officer)
        return ws

    async def close_all(self, app: web.Application) -> None:
        """On the node's stop: every stream reads no further frame, answers what it has in
        flight once committed, and closes 1001; all at once, bounded by ``STOP_DRAIN_S``."""
        streams = list(self._streams)
        for stream in streams:
            stream.end(WSCloseCode.GOING_AWAY, "node shutting down")
        async with asyncio.TaskGroup() as tasks:
            for stream in streams:
                tasks.create_task(_stopped(stream))


async def _stopped(stream: _Stream) -> None:
    try:
        async with asyncio.timeout(STOP_DRAIN_S):
            await stream.done.wait()
    except TimeoutError:
        with contextlib.suppress(ConnectionError):
            await stream.ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutting down")
