"""The node's submit stream in one process, over a real socket, in front of a submit that
the test holds: the in-flight bound, answers after the commit, hostile frames, idle and
token closes, a client that never reads, the stop. (A real node: tests/integration/
test_submit_stream.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from liaison_net.errors import Malformed, Unauthorized
from liaison_net.http_common import error_middleware
from liaison_net.officer_api.inbox_stream import CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED
from liaison_net.officer_api.submit_stream import (
    CLOSE_IDLE,
    SubmitStreams,
    SubmitStreamSettings,
)
from liaison_net.store.envelope_store import AcceptOutcome
from tests.test_inbox_stream import until
from tests.waits import PATIENCE_S

OFFICER = "nl/jdevries"
LIMIT = 4096  # the envelope limit of this harness


@dataclass
class HeldIntake:
    """A submit that commits when the test says so (``gate``), counting what it holds."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0
    most: int = 0
    taken: list[bytes] = field(default_factory=list)

    async def submit(self, officer: str, raw: bytes) -> AcceptOutcome:
        self.holding += 1
        self.most = max(self.most, self.holding)
        try:
            await self.gate.wait()
        finally:
            self.holding -= 1
        if raw.startswith(b"bad"):
            raise Malformed("not an envelope")
        if raw.startswith(b"long"):  # a refusal with a long detail: answers fill buffers fast
            raise Malformed("not an envelope: " + "x" * 4000)
        self.taken.append(raw)
        return AcceptOutcome(raw[:16].ljust(16, b"\0"), duplicate=raw in self.taken[:-1])


@dataclass
class Harness:
    intake: HeldIntake
    token_valid: list[bool]
    url: str
    http: aiohttp.ClientSession
    streams: SubmitStreams
    app: web.Application


async def _harness(settings: SubmitStreamSettings) -> AsyncIterator[Harness]:
    intake, token_valid = HeldIntake(), [True]

    def authenticate(request: web.Request) -> str:
        if not token_valid[0]:
            raise Unauthorized("unknown or expired token; log in again")
        return OFFICER

    streams = SubmitStreams(submit=intake.submit, authenticate=authenticate,
                            max_envelope_bytes=LIMIT, settings=settings)
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/stream", streams.handle)
    app.on_shutdown.append(streams.close_all)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        yield Harness(intake, token_valid, str(server.make_url("/stream")), http, streams,
                      app)


def frame(n: int, raw: bytes) -> bytes:
    return n.to_bytes(8, "big") + raw


async def answers(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, object]]:
    out = []
    async with asyncio.timeout(PATIENCE_S):
        while len(out) < count:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT, message
            out.append(json.loads(message.data))
    return out


async def closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, list[object]]:
    """Read until the close; (close code, the answers read before it)."""
    seen: list[object] = []
    async with asyncio.timeout(PATIENCE_S):
        while (message := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
            seen.append(json.loads(message.data))
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    return ws.close_code, seen


QUICK = SubmitStreamSettings(max_in_flight=3, heartbeat_s=60.0)


@pytest.fixture
async def quick() -> AsyncIterator[Harness]:
    async for h in _harness(QUICK):
        yield h


async def test_each_envelope_is_answered_by_its_number_after_its_commit(quick: Harness) -> None:
    async with quick.http.ws_connect(quick.url) as ws:
        await ws.send_bytes(frame(7, b"a" * 16))
        await ws.send_bytes(frame(9, b"bad frame"))
        await until(lambda: quick.intake.holding == 2, "both envelopes to reach the intake")
        # Nothing is answered before the commit.
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.2)
        quick.intake.gate.set()
        got = {a["n"]: a for a in await answers(ws, 2)}
    assert got[7] == {"n": 7, "http": 202, "id": got[7]["id"], "status": "accepted"}
    assert got[9] == {"n": 9, "http": 400, "error": "malformed", "detail": "not an envelope"}


async def test_past_the_in_flight_bound_the_node_reads_no_frame(quick: Harness) -> None:
    async with quick.http.ws_connect(quick.url) as ws:
        for n in range(10):
            await ws.send_bytes(frame(n, bytes([n]) * 16))
        await until(lambda: quick.intake.holding == 3, "three envelopes in flight")
        await asyncio.sleep(0.2)  # room for a fourth, were the bound not kept
        assert quick.intake.most == 3
        quick.intake.gate.set()
        got = await answers(ws, 10)
    assert sorted(a["n"] for a in got) == list(range(10))
    assert quick.intake.most == 3


async def test_past_the_nodes_bytes_in_flight_no_stream_reads_a_frame() -> None:
    """The node-wide budget of envelope bytes in flight over every stream: a stream checks
    it before each read, so one frame at most goes past it; answered, the bytes come back."""
    size = len(frame(0, b"\0" * 16))
    settings = SubmitStreamSettings(max_in_flight=64, heartbeat_s=60.0,
                                    max_bytes_in_flight=2 * size + 1)
    async for h in _harness(settings):
        async with h.http.ws_connect(h.url) as ws:
            for n in range(10):
                await ws.send_bytes(frame(n, bytes([n]) * 16))
            await until(lambda h=h: h.intake.holding == 3, "three envelopes in flight")
            await asyncio.sleep(0.2)  # room for a fourth, were the budget not kept
            assert h.intake.most == 3
            assert h.streams.budget.used == 3 * size
            h.intake.gate.set()
            got = await answers(ws, 10)
        assert sorted(a["n"] for a in got) == list(range(10))
        assert h.intake.most == 3
        assert h.streams.budget.used == 0


async def test_an_envelope_over_the_limit_is_answered_as_the_post_answers_it(
        quick: Harness) -> None:
    quick.intake.gate.set()
    async with quick.http.ws_connect(quick.url) as ws:
        await ws.send_bytes(frame(1, b"x" * (LIMIT + 1)))
        got = await answers(ws, 1)
    assert got == [{"n": 1, "http": 413, "error": "limit_exceeded",
                    "detail": f"request body exceeds {LIMIT} bytes"}]
    assert quick.intake.taken == []


@pytest.mark.parametrize(("send", "code"), [
    ("text", aiohttp.WSCloseCode.UNSUPPORTED_DATA),
    ("short", aiohttp.WSCloseCode.INVALID_TEXT),
    ("huge", aiohttp.WSCloseCode.MESSAGE_TOO_BIG),
])
async def test_a_hostile_frame_closes_the_stream_after_answering_what_was_taken(
        quick: Harness, send: str, code: int) -> None:
    quick.intake.gate.set()
    async with quick.http.ws_connect(quick.url) as ws:
        await ws.send_bytes(frame(1, b"g" * 16))
        await answers(ws, 1)
        if send == "text":
            await ws.send_str("hello")
        elif send == "short":
            await ws.send_bytes(b"\x01\x02")
        else:
            await ws.send_bytes(frame(2, b"h" * (LIMIT + 2048)))
        close_code, _ = await closed(ws)
    assert close_code == code
    await until(lambda: quick.streams.slots.open_total == 0, "the slot to be given back")


async def test_an_expired_token_closes_4401_after_answering_what_was_taken(
        quick: Harness) -> None:
    async with quick.http.ws_connect(quick.url) as ws:
        await ws.send_bytes(frame(1, b"t" * 16))
        await until(lambda: quick.intake.holding == 1, "the first envelope in flight")
        quick.token_valid[0] = False
        await ws.send_bytes(frame(2, b"u" * 16))
        quick.intake.gate.set()
        close_code, seen = await closed(ws)
    assert close_code == CLOSE_TOKEN_EXPIRED
    assert [a["n"] for a in seen] == [1]  # type: ignore[index]
    assert quick.intake.taken == [b"t" * 16]


async def test_an_idle_stream_and_an_idle_expired_token_are_closed() -> None:
    async for h in _harness(SubmitStreamSettings(idle_s=0.3, heartbeat_s=60.0)):
        async with h.http.ws_connect(h.url) as ws:
            assert (await closed(ws))[0] == CLOSE_IDLE
    async for h in _harness(SubmitStreamSettings(token_check_s=0.2, heartbeat_s=60.0)):
        async with h.http.ws_connect(h.url) as ws:
            h.token_valid[0] = False
            assert (await closed(ws))[0] == CLOSE_TOKEN_EXPIRED


async def test_a_client_that_never_reads_answers_is_closed_as_slow() -> None:
    settings = SubmitStreamSettings(max_in_flight=8, slow_consumer_s=0.3, heartbeat_s=60.0)
    async for h in _harness(settings):
        h.intake.gate.set()
        async with h.http.ws_connect(h.url) as ws:
            sender = asyncio.create_task(_flood(ws, h.streams))
            try:
                await until(lambda streams=h.streams: streams.slots.open_total == 0,
                            "the node to close a client that reads no answer")
            finally:
                sender.cancel()
            # Now read: the answers that were written, then the node's close (4008, or the
            # connection dropped when even the close frame found the buffers full).
            close_code, _ = await closed(ws)
        assert close_code in (CLOSE_SLOW_CONSUMER, aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
        assert h.intake.most <= 8


async def _flood(ws: aiohttp.ClientWebSocketResponse, streams: SubmitStreams) -> None:
    """Frames whose answers are long refusals, sent without reading any answer."""
    for n in range(100_000):
        await ws.send_bytes(frame(n, b"long"))
        if streams.slots.open_total == 0:
            return


async def test_too_many_streams_of_one_officer_are_refused_before_the_upgrade() -> None:
    async for h in _harness(SubmitStreamSettings(per_officer=1, heartbeat_s=60.0)):
        async with h.http.ws_connect(h.url):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await h.http.ws_connect(h.url)
            assert refused.value.status == 429


async def test_the_stop_answers_what_is_in_flight_then_closes_1001(quick: Harness) -> None:
    async with quick.http.ws_connect(quick.url) as ws:
        await ws.send_bytes(frame(1, b"s" * 16))
        await until(lambda: quick.intake.holding == 1, "the envelope in flight")
        stopping = asyncio.create_task(quick.streams.close_all(quick.app))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waits for the commit
        quick.intake.gate.set()
        close_code, seen = await closed(ws)
        await stopping
    assert close_code == aiohttp.WSCloseCode.GOING_AWAY
    assert [a["n"] for a in seen] == [1]  # type: ignore[index]


async def test_a_stream_quiet_for_a_while_under_its_limits_still_takes_frames() -> None:
    # Quiet past several token checks (each a receive that timed out), within idle_s.
    async for h in _harness(SubmitStreamSettings(token_check_s=0.05, idle_s=60.0,
                                                 heartbeat_s=60.0)):
        h.intake.gate.set()
        async with h.http.ws_connect(h.url) as ws:
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.3)
            await ws.send_bytes(frame(5, b"q" * 16))
            assert [a["n"] for a in await answers(ws, 1)] == [5]


async def test_pongs_and_pings_do_not_keep_an_idle_stream_or_an_expired_token_open() -> None:
    # The heartbeat's pongs arrive more often than idle_s and token_check_s: a deadline
    # restarted by every control frame would never pass.
    async for h in _harness(SubmitStreamSettings(idle_s=0.5, heartbeat_s=0.1)):
        async with h.http.ws_connect(h.url) as ws:
            assert (await closed(ws))[0] == CLOSE_IDLE
    async for h in _harness(SubmitStreamSettings(token_check_s=0.3, heartbeat_s=0.1)):
        async with h.http.ws_connect(h.url) as ws:
            h.token_valid[0] = False
            assert (await closed(ws))[0] == CLOSE_TOKEN_EXPIRED
    # A client's own pings, without any heartbeat from the node.
    async for h in _harness(SubmitStreamSettings(idle_s=0.5, heartbeat_s=60.0)):
        async with h.http.ws_connect(h.url, autoping=True) as ws:
            pinger = asyncio.create_task(_ping_until_closed(ws))
            try:
                assert (await closed(ws))[0] == CLOSE_IDLE
            finally:
                pinger.cancel()


async def _ping_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    while not ws.closed:
        await ws.ping()
        await asyncio.sleep(0.05)
