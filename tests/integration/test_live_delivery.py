"""Live delivery across real node processes: followers see every envelope exactly once, in
inbox order, while the destination node is killed (SIGKILL) and stopped (SIGTERM, which
closes streams from the server side) mid-stream; the stream's refusals (401, 429, 400)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from liaison_net import errors
from liaison_net.client.follow import resume_position
from liaison_net.client.session import InboxEntry, NodeSession
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import LIAISON, Network, https, officer_tls
from tests.integration.officers import PASSPHRASE, OfficerAgent, bearer_token, enrol
from tests.integration.test_first_alert import directory_with
from tests.waits import PATIENCE_S


async def until(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``condition`` without blocking the loop (followers run beside the test)."""
    try:
        async with asyncio.timeout(max(timeout, PATIENCE_S)):
            while not (value := condition()):
                await asyncio.sleep(0.05)
            return value
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


class CliFollower:
    """`liaison inbox --follow --json` as a process, its passphrase on a file descriptor,
    its JSON lines in a file; killed by PID in ``stop``."""

    def __init__(self, net: Network, agent: OfficerAgent, name: str) -> None:
        self.out = net.root / f"{name}.out"
        self.err = net.root / f"{name}.err"
        read_end, write_end = os.pipe()
        os.write(write_end, PASSPHRASE + b"\n")
        os.close(write_end)
        try:
            with self.out.open("wb") as out, self.err.open("wb") as err:
                self.proc = subprocess.Popen(
                    [*LIAISON, "inbox", "--follow", "--json", "--keystore", str(agent.path),
                     "--passphrase-fd", str(read_end)],
                    stdout=out, stderr=err, pass_fds=(read_end,), start_new_session=True,
                    env={k: v for k, v in os.environ.items() if k != "LIAISON_PASSPHRASE"})
        finally:
            os.close(read_end)
        net.extra_procs.append(self.proc)  # killed at teardown even if the test fails

    def seqs(self) -> list[int]:
        if self.proc.poll() is not None:
            raise AssertionError(f"follower exited {self.proc.returncode}: "
                                 f"{self.err.read_text()[-2000:]}")
        lines = self.out.read_text().splitlines()
        complete = lines if self.out.read_text().endswith("\n") else lines[:-1]
        return [json.loads(line)["seq"] for line in complete]

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


async def test_followers_see_every_envelope_once_across_node_restarts(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    seen: list[InboxEntry] = []
    reconnects: list[str] = []

    async def follow(session: NodeSession) -> None:
        async with contextlib.aclosing(session.follow(
                0, on_retry=lambda exc, _: reconnects.append(exc.code))) as entries:
            async for entry in entries:
                seen.append(entry)

    cli = CliFollower(net, marie, "follower1")
    try:
        async with jan.session() as nl, marie.session() as be, \
                NodeSession(marie.keystore) as follower:
            directory = await directory_with(nl, marie.id)
            sent: list[str] = []

            async def send(n: int) -> None:
                for i in range(n):
                    envelope = jan.seal(directory, [marie.id], f"alert {len(sent)}".encode())
                    sent.append(envelope.header.id_text)
                    assert (await nl.submit(envelope.to_bytes())).status == "accepted"
                    if i % 3 == 0:
                        await asyncio.sleep(0.02)  # let a few batches form

            async with asyncio.TaskGroup() as tasks:
                following = tasks.create_task(follow(follower))
                await send(8)
                await until(lambda: len(seen) >= 3 and len(cli.seqs()) >= 3, timeout=30,
                            what="both followers to be streaming")
                # Mid-stream: the destination dies hard; nl queues what follows.
                await asyncio.to_thread(net.kill, "be", signal.SIGKILL)
                await send(8)
                await asyncio.to_thread(net.start, "be")
                await until(lambda: len(seen) >= 16 and len(cli.seqs()) >= 16, timeout=60,
                            what="the envelopes queued while be was down")
                # A clean stop: the node closes every stream (1001) before it exits.
                await send(4)
                await asyncio.to_thread(net.kill, "be", signal.SIGTERM)
                await send(4)
                await asyncio.to_thread(net.start, "be")
                await until(lambda: len(seen) >= 24 and len(cli.seqs()) >= 24, timeout=60,
                            what="every envelope at both followers")
                await asyncio.sleep(1.0)  # room for a duplicate to show up, if one would
                following.cancel()

            inbox = await be.inbox_all()
            assert sorted(e.id for e in inbox) == sorted(sent)
            in_order = [e.seq for e in inbox]
            assert [e.seq for e in seen] == in_order, "in-test follower: gap or repeat"
            assert [e.id for e in seen] == [e.id for e in inbox]
            assert cli.seqs() == in_order, "CLI follower: gap or repeat"
            assert reconnects and all(code == "unavailable" for code in reconnects)
            assert "reconnecting" in cli.err.read_text()
            assert cli.entries()[0].keys() == {"seq", "id", "sender", "kind", "precedence",
                                               "created", "relayed", "acked", "retain_until",
                                               "purged"}

            # A restarted CLI starts at the acknowledged position: the acknowledged prefix
            # and any later acknowledged entry stay hidden, the rest shows again, once.
            cli.stop()
            for e in [*inbox[:5], inbox[7]]:
                assert await be.ack(e.id) is True
            assert await resume_position(be) == inbox[4].seq
            again = CliFollower(net, marie, "follower2")
            expected = [e.seq for i, e in enumerate(inbox) if i >= 5 and i != 7]
            await until(lambda: len(again.seqs()) >= len(expected), timeout=30,
                        what="the unacknowledged entries after a restart")
            await send(1)
            await until(lambda: len(again.seqs()) >= len(expected) + 1, timeout=30,
                        what="a new envelope at the restarted follower")
            await asyncio.sleep(0.5)
            newest = (await be.inbox_all())[-1]
            assert again.seqs() == [*expected, newest.seq]
            again.stop()
    finally:
        cli.stop()


async def test_the_stream_refuses_bad_tokens_too_many_streams_and_plain_gets(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl",))
    jan = enrol(net, "nl/jdevries")
    piet = enrol(net, "nl/pbakker")
    net.start("nl")
    port = net.nodes["nl"].client_port
    url = f"https://127.0.0.1:{port}/api/v1/inbox/stream"
    host = node_hostname("nl")
    token = await bearer_token(piet)
    connector = aiohttp.TCPConnector(ssl=officer_tls(net))
    async with aiohttp.ClientSession(connector=connector) as http, \
            contextlib.AsyncExitStack() as streams:
        async def open_stream(bearer: str | None, after: str = "0"
                              ) -> aiohttp.ClientWebSocketResponse:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
            ws = await http.ws_connect(f"{url}?after={after}", headers=headers,
                                       server_hostname=host)
            streams.push_async_callback(ws.close)
            return ws

        async def refused(bearer: str | None, after: str = "0") -> int:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await open_stream(bearer, after)
            return caught.value.status

        assert await refused(None) == 401
        assert await refused("not-a-token") == 401
        assert await refused(token, after="-1") == 400

        # The stream's messages carry exactly the fields of GET /api/v1/inbox items.
        async with jan.session() as nl:
            directory = await directory_with(nl, piet.id)
            envelope = jan.seal(directory, [piet.id], b"local alert")
            await nl.submit(envelope.to_bytes())
        first = await open_stream(token)
        message = json.loads((await first.receive(timeout=PATIENCE_S)).data)
        status, body = await https(port, officer_tls(net), host, "GET", "/api/v1/inbox",
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and json.loads(body)["items"][0] == message

        for _ in range(3):  # the per-officer limit is 4
            await open_stream(token)
        assert await refused(token) == 429
        async with piet.session() as session:
            with pytest.raises(errors.RateLimited, match="too many live inbox streams"):
                async with contextlib.aclosing(session.follow(0)) as entries:
                    await anext(entries)
        # Another officer is not affected by piet's streams.
        other = await open_stream(await bearer_token(jan))
        assert not other.closed

        # A closed stream gives its slot back.
        await first.close()
        async with asyncio.timeout(PATIENCE_S):
            while True:
                try:
                    await open_stream(token)
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 429
                    await asyncio.sleep(0.05)

        # Not a websocket upgrade: a plain answer, with the reason.
        status, body = await https(port, officer_tls(net), host, "GET",
                                   "/api/v1/inbox/stream",
                                   headers={"Authorization": f"Bearer {token}"})
        assert status == 400 and json.loads(body)["error"] == "malformed"

        # The stream takes no messages from the client: it closes with 1003.
        chatty = await open_stream(await bearer_token(jan))
        await chatty.send_str("hello")
        async with asyncio.timeout(PATIENCE_S):
            while (closing := await chatty.receive()).type is aiohttp.WSMsgType.TEXT:
                pass  # jan's inbox entries (delivery evidence) may come first
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1003
