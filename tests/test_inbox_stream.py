"""The node's inbox stream in one process, over a real socket, against an in-memory inbox:
wake-ups, slow and silent consumers, an expiring token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from liaison_net.errors import Unauthorized
from liaison_net.http_common import error_middleware
from liaison_net.officer_api.inbox_stream import (
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    InboxStreams,
    InboxWatch,
    StreamSettings,
)
from liaison_net.store.node_store import InboxItem
from tests.waits import PATIENCE_S

OFFICER = "nl/jdevries"


@dataclass
class MemoryInbox:
    items: list[InboxItem] = field(default_factory=list)
    endless: bool = False  # every read answers a full page of new entries
    reads: int = 0

    def add(self) -> InboxItem:
        seq = len(self.items) + 1
        item = InboxItem(seq, bytes(16), "be/mpeeters", "message", 1, seq, seq, None)
        self.items.append(item)
        return item

    async def read(self, officer: str, after: int, limit: int) -> list[InboxItem]:
        self.reads += 1
        if self.endless:
            while len(self.items) < after + limit:
                self.add()
        return [i for i in self.items if i.seq > after][:limit]


@dataclass
class Harness:
    inbox: MemoryInbox
    watch: InboxWatch
    token_valid: list[bool]
    url: str
    http: aiohttp.ClientSession
    streams: InboxStreams


async def _harness(settings: StreamSettings) -> AsyncIterator[Harness]:
    inbox, watch, token_valid = MemoryInbox(), InboxWatch(), [True]

    def authenticate(request: web.Request) -> str:
        if not token_valid[0]:
            raise Unauthorized("unknown or expired token; log in again")
        return OFFICER

    streams = InboxStreams(read_inbox=inbox.read, authenticate=authenticate,
                           parse_after=lambda request: int(request.query.get("after", "0")),
                           watch=watch, settings=settings)
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/stream", streams.handle)
    app.on_shutdown.append(streams.close_all)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        yield Harness(inbox, watch, token_valid, str(server.make_url("/stream")), http,
                      streams)


async def until(condition: Callable[[], bool], what: str, patience: float = PATIENCE_S) -> None:
    """Poll ``condition`` (the event loop runs the server meanwhile); a bound that only a
    hang reaches, with a message that says what was awaited."""
    try:
        async with asyncio.timeout(patience):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"waited {patience:g} s for {what}") from None


@pytest.fixture
async def quick() -> AsyncIterator[Harness]:
    async for h in _harness(StreamSettings(poll_s=60.0, heartbeat_s=60.0)):
        yield h


async def test_a_commit_notification_pushes_the_new_entry_at_once(quick: Harness) -> None:
    quick.inbox.add()
    async with quick.http.ws_connect(quick.url + "?after=0") as ws:
        first = json.loads((await ws.receive(timeout=PATIENCE_S)).data)
        assert first["seq"] == 1
        quick.inbox.add()
        quick.watch.notify([OFFICER])
        second = json.loads((await ws.receive(timeout=PATIENCE_S)).data)  # well before poll_s
        assert second["seq"] == 2


async def test_the_stream_starts_after_the_given_seq(quick: Harness) -> None:
    for _ in range(3):
        quick.inbox.add()
    async with quick.http.ws_connect(quick.url + "?after=2") as ws:
        assert json.loads((await ws.receive(timeout=PATIENCE_S)).data)["seq"] == 3


async def test_a_consumer_that_does_not_read_is_closed_as_slow() -> None:
    settings = StreamSettings(slow_consumer_s=0.3, queue_size=4, poll_s=60.0, heartbeat_s=60.0)
    async for h in _harness(settings):
        h.inbox.endless = True
        async with h.http.ws_connect(h.url) as ws:
            # Read nothing until the node has given up: buffers fill, a message waits
            # longer than slow_consumer_s, the node closes the stream and frees its slot.
            # The client's patience is the generous bound; the node's limit is the short one.
            await until(lambda streams=h.streams: streams.slots.open_total == 0,
                        "the node to close the stream of a consumer that reads nothing")
            async with asyncio.timeout(PATIENCE_S):
                while (message := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                    pass
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert message.data == CLOSE_SLOW_CONSUMER


async def test_a_client_that_answers_no_ping_is_closed() -> None:
    async for h in _harness(StreamSettings(heartbeat_s=0.2, poll_s=60.0)):
        async with h.http.ws_connect(h.url, autoping=False) as ws:
            async with asyncio.timeout(PATIENCE_S):
                while (message := await ws.receive()).type is aiohttp.WSMsgType.PING:
                    pass
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.ERROR)


async def test_an_expired_token_closes_the_stream_with_4401() -> None:
    async for h in _harness(StreamSettings(poll_s=0.1, heartbeat_s=60.0)):
        async with h.http.ws_connect(h.url) as ws:
            h.token_valid[0] = False
            message = await ws.receive(timeout=PATIENCE_S)
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE,
                                                    CLOSE_TOKEN_EXPIRED)
