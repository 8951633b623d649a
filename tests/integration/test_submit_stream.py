"""The submit stream on real nodes over real TLS: each frame answered exactly as
``POST /api/v1/envelopes`` answers the same envelope; a token ended mid-stream; the node
stopped mid-stream (nothing committed goes unanswered or unfound, nothing is stored
twice); a hostile client that cannot hurt the node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections.abc import AsyncIterator

import aiohttp
import pytest

from liaison_net.client.session import (
    ENVELOPE_MEDIA_TYPE,
    SubmitResult,
    officer_ssl_context,
)
from liaison_net.core.envelope import Envelope
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.errors import LiaisonError, Unauthorized, Unavailable
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network
from tests.integration.officers import OfficerAgent, bearer_token, enrol
from tests.integration.test_first_alert import directory_with
from tests.waits import PATIENCE_S

pytestmark = pytest.mark.slow

STREAM = "/api/v1/envelopes/stream"


class Raw:
    """The officer API by hand, as a feeding system would speak it: one HTTPS session,
    POSTs and one websocket, with Jan's bearer token."""

    def __init__(self, agent: OfficerAgent, token: str, http: aiohttp.ClientSession) -> None:
        self.url = agent.keystore.node_url
        self.node = agent.keystore.node
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = http

    async def post(self, raw: bytes) -> tuple[int, dict[str, object]]:
        async with self.http.post(self.url + "/api/v1/envelopes", data=raw,
                                  headers={**self.headers,
                                           "Content-Type": ENVELOPE_MEDIA_TYPE},
                                  server_hostname=node_hostname(self.node)) as resp:
            return resp.status, dict(await resp.json())

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        async with self.http.ws_connect(self.url + STREAM, headers=self.headers,
                                        server_hostname=node_hostname(self.node),
                                        max_msg_size=1 << 20) as ws:
            yield ws


@contextlib.asynccontextmanager
async def raw_api(agent: OfficerAgent) -> AsyncIterator[Raw]:
    token = await bearer_token(agent)
    connector = aiohttp.TCPConnector(ssl=officer_ssl_context(agent.keystore.ca_cert_pem))
    async with aiohttp.ClientSession(connector=connector) as http:
        yield Raw(agent, token, http)


async def answer(ws: aiohttp.ClientWebSocketResponse, n: int, raw: bytes) -> dict[str, object]:
    await ws.send_bytes(n.to_bytes(8, "big") + raw)
    message = await ws.receive(timeout=PATIENCE_S)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    got = dict(json.loads(message.data))
    assert got.pop("n") == n
    return got


def tampered(envelope: Envelope) -> bytes:
    raw = bytearray(envelope.to_bytes())
    raw[-1] ^= 0x01  # a byte of the ciphertext: the signature no longer verifies
    return bytes(raw)


def stored(net: Network, nid: str, envelopes: list[Envelope]) -> set[bytes]:
    """Which of ``envelopes`` the node stored (its own statements are there too)."""
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return {e.id for e in envelopes
                if db.execute("SELECT 1 FROM envelopes WHERE id = ?", (e.id,)).fetchone()}


@pytest.fixture
def two_nodes(make_network: type[Network]) -> tuple[Network, OfficerAgent, OfficerAgent,
                                                    OfficerAgent]:
    net = make_network.create(node_ids=("nl", "be"))
    agents = (enrol(net, "nl/jdevries"), enrol(net, "nl/pbakker"), enrol(net, "be/mpeeters"))
    for nid in ("nl", "be"):
        net.start(nid)
    return net, *agents


async def test_each_frame_is_answered_exactly_as_the_post_answers_it(
        two_nodes: tuple[Network, OfficerAgent, OfficerAgent, OfficerAgent]) -> None:
    net, jan, piet, marie = two_nodes
    async with jan.session() as node:
        directory = await directory_with(node, jan.id, piet.id, marie.id)
    first, second = (jan.seal(directory, [marie.id], f"alert {i}".encode()) for i in (1, 2))
    piets = piet.seal(directory, [marie.id], b"signed by Piet, handed over by Jan")
    oversize = b"\x00" * (DEFAULT_LIMITS.max_envelope_bytes + 1)
    async with raw_api(jan) as api, api.stream() as ws:
        # Fresh, then a copy: the stream takes `first`, the POST `second`, then the other
        # way round; the answers differ only in the id.
        by_stream = [await answer(ws, 1, first.to_bytes())]
        by_post = [await api.post(second.to_bytes())]
        by_stream.append(await answer(ws, 2, second.to_bytes()))
        by_post.append(await api.post(first.to_bytes()))
        for (status, body), got, env in zip(by_post, by_stream, (second, first), strict=True):
            assert status == got.pop("http") == 202
            assert body == {**got, "id": env.header.id_text}
        assert [b["status"] for _, b in by_post] == ["accepted", "duplicate"]
        # Refusals: the same status, code and detail, word for word.
        for n, raw in enumerate((tampered(first), piets.to_bytes(), oversize,
                                 b"\x93not an envelope", b""), start=3):
            status, body = await api.post(raw)
            got = await answer(ws, n, raw)
            assert (got.pop("http"), got) == (status, body), (n, status, body)
            assert status in (400, 403, 413), body
    assert stored(net, "nl", [first, second, piets]) == {first.id, second.id}

    # The client library's stream ends each submit as NodeSession.submit does.
    async with jan.session() as node, node.submit_stream() as stream:
        assert await stream.submit(first.to_bytes()) == await node.submit(first.to_bytes())
        outcomes = []
        for call in (stream.submit, node.submit):
            with pytest.raises(LiaisonError) as refused:
                await call(piets.to_bytes())
            outcomes.append((type(refused.value), refused.value.code, refused.value.detail))
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][1] == "forbidden"


async def test_a_token_ended_mid_stream_closes_it_4401_and_takes_no_further_envelope(
        two_nodes: tuple[Network, OfficerAgent, OfficerAgent, OfficerAgent]) -> None:
    net, jan, _, marie = two_nodes
    async with jan.session() as node:
        directory = await directory_with(node, jan.id, marie.id)
        before, after = (jan.seal(directory, [marie.id], f"alert {i}".encode()) for i in (1, 2))
        async with node.submit_stream() as stream:
            assert (await stream.submit(before.to_bytes())).status == "accepted"
            await node._call("POST", "/api/v1/logout")  # the stream's token ends here
            with pytest.raises(Unauthorized, match="4401"):
                await stream.submit(after.to_bytes())
        assert stored(net, "nl", [before, after]) == {before.id}
        # A new stream logs in again by itself.
        async with node.submit_stream() as stream:
            assert (await stream.submit(after.to_bytes())).status == "accepted"


async def test_the_node_stopped_mid_stream_answers_what_it_committed_and_stores_nothing_twice(
        two_nodes: tuple[Network, OfficerAgent, OfficerAgent, OfficerAgent]) -> None:
    net, jan, _, marie = two_nodes
    async with jan.session() as node:
        directory = await directory_with(node, jan.id, marie.id)
    envelopes = [jan.seal(directory, [marie.id], f"alert {i}".encode()) for i in range(400)]
    answered: dict[bytes, str] = {}
    ended: list[LiaisonError] = []
    async with jan.session() as node, node.submit_stream() as stream:
        async def one(env: Envelope) -> None:
            try:
                answered[env.id] = (await stream.submit(env.to_bytes())).status
            except Unavailable as exc:
                ended.append(exc)

        submits = [asyncio.create_task(one(env)) for env in envelopes]
        async with asyncio.timeout(PATIENCE_S):
            while len(answered) < 20:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(net.kill, "nl", signal.SIGTERM)
        await asyncio.gather(*submits)
    assert ended, "the stop came after every envelope was answered: nothing was tested"
    assert any("(1001" in exc.detail for exc in ended), [e.detail for e in ended[:3]]
    assert set(answered.values()) == {"accepted"}
    committed = stored(net, "nl", envelopes)
    assert set(answered) <= committed  # every "accepted" was committed

    # Back up: everything is offered again; what was committed answers duplicate, the rest
    # accepted, and every envelope is stored exactly once (ids are the primary key).
    net.start("nl")
    async with jan.session() as node, node.submit_stream() as stream:
        again = await asyncio.gather(*(stream.submit(e.to_bytes()) for e in envelopes))
    for env, result in zip(envelopes, again, strict=True):
        assert isinstance(result, SubmitResult)
        assert result.status == ("duplicate" if env.id in committed else "accepted")
    assert stored(net, "nl", envelopes) == {e.id for e in envelopes}


async def test_a_hostile_client_cannot_hurt_the_node(
        two_nodes: tuple[Network, OfficerAgent, OfficerAgent, OfficerAgent]) -> None:
    net, jan, _, marie = two_nodes
    async with jan.session() as node:
        directory = await directory_with(node, jan.id, marie.id)
    good = jan.seal(directory, [marie.id], b"still served")
    async with raw_api(jan) as api:
        async with api.stream() as ws:  # garbage: typed answers, the stream goes on
            for n in range(50):
                got = await answer(ws, n, bytes([n]) * (n * 7))
                assert got["http"] in (400, 413) and got["error"] != "node_fault", got
        for hostile, code in ((lambda ws: ws.send_str("{}"), 1003),
                              (lambda ws: ws.send_bytes(b"\x01"), 1007),
                              (lambda ws: ws.send_bytes(
                                  bytes(DEFAULT_LIMITS.max_envelope_bytes + 4096)), 1009)):
            async with api.stream() as ws:
                await hostile(ws)
                message = await ws.receive(timeout=PATIENCE_S)
                assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, code)
        async with api.stream() as ws:
            assert (await answer(ws, 1, good.to_bytes()))["status"] == "accepted"
    assert net.nodes["nl"].running
    assert "Traceback" not in net.nodes["nl"].log_tail(1_000_000)
    async with jan.session() as node:
        assert (await node.status(good.header.id_text)).id == good.header.id_text

