"""The client end of the submit stream against a node that answers oddly (a real socket,
an aiohttp server that plays the node): answers matched by number whatever their order,
a refusal as its typed error, and an answer it cannot read ends every submit still
waiting, never hangs one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from liaison_net.client.submit_stream import SubmitStream
from liaison_net.core.ids import id_to_text
from liaison_net.errors import Forbidden, Malformed, Unavailable
from tests.waits import PATIENCE_S

ID = id_to_text(bytes(range(16)))


def _node(answer: Callable[[int, bytes], list[str]], *, after: int = 1) -> web.Application:
    """A websocket that collects ``after`` frames, then answers them in reverse order."""
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        held: list[tuple[int, bytes]] = []
        async for message in ws:
            data = message.data
            held.append((int.from_bytes(data[:8], "big"), data[8:]))
            if len(held) == after:
                for number, raw in reversed(held):
                    for text in answer(number, raw):
                        await ws.send_str(text)
                held.clear()
        return ws

    app = web.Application()
    app.router.add_get("/s", handle)
    return app


async def _stream(app: web.Application, http: aiohttp.ClientSession,
                  server: TestServer) -> SubmitStream:
    return SubmitStream(await http.ws_connect(server.make_url("/s")), "test node")


async def test_answers_are_matched_by_number_in_whatever_order_they_come() -> None:
    def answer(number: int, raw: bytes) -> list[str]:
        if raw == b"refuse":
            return [json.dumps({"n": number, "http": 403, "error": "forbidden",
                                "detail": "not yours"})]
        return [json.dumps({"n": number, "http": 202, "id": ID, "status": raw.decode()})]

    app = _node(answer, after=3)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        stream = await _stream(app, http, server)
        try:
            async with asyncio.timeout(PATIENCE_S):
                results = await asyncio.gather(
                    stream.submit(b"accepted"), stream.submit(b"refuse"),
                    stream.submit(b"duplicate"), return_exceptions=True)
        finally:
            await stream.close()
    assert [getattr(r, "status", None) for r in results] == ["accepted", None, "duplicate"]
    assert [getattr(r, "id", None) for r in results] == [ID, None, ID]
    assert isinstance(results[1], Forbidden) and results[1].detail == "not yours"


@pytest.mark.parametrize("odd", ["not json", "[1, 2]", '{"http": 202}', "[" * 20_000,
                                 '{"n": 1, "http": 202, "id": "x", "status": "accepted"}'])
async def test_an_answer_it_cannot_read_ends_the_submits_waiting(odd: str) -> None:
    app = _node(lambda number, raw: [odd])
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        stream = await _stream(app, http, server)
        try:
            async with asyncio.timeout(PATIENCE_S):
                with pytest.raises(Malformed):
                    await stream.submit(b"envelope")
        finally:
            await stream.close()


async def test_a_close_before_the_answer_ends_the_submit_unavailable() -> None:
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"node shutting down")
        return ws

    app = web.Application()
    app.router.add_get("/s", handle)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        stream = await _stream(app, http, server)
        try:
            async with asyncio.timeout(PATIENCE_S):
                with pytest.raises(Unavailable, match="1001"):
                    await stream.submit(b"envelope")
                with pytest.raises(Unavailable):  # and every later submit at once
                    await stream.submit(b"another")
        finally:
            await stream.close()


async def test_a_node_that_never_answers_ends_the_submit_unavailable_in_its_time() -> None:
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:  # takes every frame, answers none, keeps the socket open
            pass
        return ws

    app = web.Application()
    app.router.add_get("/s", handle)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        stream = SubmitStream(await http.ws_connect(server.make_url("/s")), "test node",
                              answer_timeout_s=0.2)
        try:
            async with asyncio.timeout(PATIENCE_S):
                with pytest.raises(Unavailable, match="did not answer a submit within"):
                    await stream.submit(b"envelope")
            assert stream._waiting == {}  # nothing left for a late answer to find
        finally:
            await stream.close()
