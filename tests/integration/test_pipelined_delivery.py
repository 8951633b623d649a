"""Several transactions in flight per peer (issue 16): faster catch-up, every guarantee kept.

Real node processes. The first test queues envelopes at NL while BE is down, then lets NL
catch up with four transactions in flight: each envelope reaches the inbox exactly once,
what was queued as flash is stored before any routine envelope queued beside it, and NL
audits each relay once. The second puts a fake BE (BE's real certificate, a real mutual-TLS
server) behind BE's port that watches every transaction NL sends: no envelope is ever in two
transactions in flight, a transaction carries one precedence, routine waits for every flash
transaction to be answered, and one transaction the fake holds unanswered does not stop
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from liaison_net.client.directory import Directory
from liaison_net.core import codec
from liaison_net.core.envelope import Envelope, Precedence
from liaison_net.federation import protocol
from liaison_net.federation.tls import server_context
from tests.integration.network import TEST_DELIVERY, Network, audit_rows, wait_for
from tests.integration.officers import OfficerAgent
from tests.integration.test_faults import (
    backoff_attempts,
    inbox_rows,
    setup_pair,
    submit_all,
)

pytestmark = pytest.mark.slow


def sealed(jan: OfficerAgent, directory: Directory, to: str, n: int,
           precedence: Precedence, tag: str) -> list[Envelope]:
    return [jan.seal(directory, [to], f"{tag} {i}".encode(), precedence=precedence)
            for i in range(n)]


def hop_states(net: Network, nid: str, peer: str) -> Counter[str]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return Counter(r[0] for r in db.execute("SELECT state FROM hops WHERE node = ?",
                                                (peer,)))


def inbox_seq(net: Network, nid: str) -> dict[bytes, int]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return {bytes(r[0]): int(r[1])
                for r in db.execute("SELECT envelope_id, seq FROM inbox")}


def relayed_once(net: Network, nid: str, ids: set[bytes]) -> None:
    """Each of ``ids`` audited as relayed once. Polled: the origin writes the last answer
    shortly after the peer stored it (a small transaction's write rides, lane release16)."""
    def relayed() -> Counter[bytes]:
        return Counter(r.envelope_id for r in audit_rows(net, nid)
                       if r.event == "envelope.relayed")

    wait_for(lambda: set(relayed()) >= ids, what="each relay recorded")
    counted = relayed()
    assert set(counted) == ids
    assert max(counted.values()) == 1, "an envelope audited as relayed twice"


async def test_catch_up_with_transactions_in_flight(make_network: type[Network]) -> None:
    """240 envelopes queued at NL while BE is down (routine ones older than the flash ones),
    then BE returns: all in the inbox exactly once, flash stored first, one relay audit
    each, however the four transactions in flight interleave."""
    net = make_network.create(node_ids=("nl", "be"),
                              delivery={**TEST_DELIVERY, "batch_size": 16, "in_flight": 4})
    jan, marie, directory = await setup_pair(net)
    net.kill("be", signal.SIGKILL)
    routine = sealed(jan, directory, marie.id, 200, Precedence.ROUTINE, "routine")
    flash = sealed(jan, directory, marie.id, 40, Precedence.FLASH, "flash")
    assert await submit_all(jan, [e.to_bytes() for e in routine + flash]) == set(range(240))
    wait_for(lambda: backoff_attempts(net, "nl", "be") >= 1, what="NL to try BE")
    net.start("be")
    wait_for(lambda: hop_states(net, "nl", "be") == Counter(delivered=240), timeout=120,
             interval=0.25, what="every hop delivered")
    rows = inbox_rows(net, "be", marie.id)
    assert len(rows) == 240 and len(set(rows)) == 240  # exactly once
    seq = inbox_seq(net, "be")
    flash_ids, routine_ids = [e.id for e in flash], [e.id for e in routine]
    assert max(seq[i] for i in flash_ids) < min(seq[i] for i in routine_ids), \
        "a routine envelope was stored before a flash one queued beside it"
    relayed_once(net, "nl", set(flash_ids) | set(routine_ids))


HOLD_FLASH_S = 1.0  # how long the fake holds each flash transaction before answering it


@dataclass
class WatchingPeer:
    """BE's federation door, played by the test: answers every envelope accepted, and
    records what NL had in flight at once. Each flash transaction is held for
    ``HOLD_FLASH_S`` (time for NL to start routine ones beside it, if it would), and the
    first routine one until ``release`` is set."""

    envelopes: dict[bytes, Envelope]  # by their bytes
    release: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: set[bytes] = field(default_factory=set)
    overlaps: list[bytes] = field(default_factory=list)
    answered: Counter[bytes] = field(default_factory=Counter)
    events: list[tuple[str, int, frozenset[Precedence]]] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)
    count: int = 0

    async def transaction(self, request: web.Request) -> web.Response:
        body = codec.unpack(await request.read(), what="request", max_bytes=1 << 26)
        envelopes = [self.envelopes[raw] for raw in body["envelopes"]]
        ids = [e.id for e in envelopes]
        precedences = frozenset(e.header.precedence for e in envelopes)
        self.count += 1
        number = self.count
        self.overlaps.extend(i for i in ids if i in self.in_flight)
        self.in_flight.update(ids)
        self.events.append(("start", number, precedences))
        try:
            if Precedence.FLASH in precedences:
                await asyncio.sleep(HOLD_FLASH_S)
            elif not self.held:
                self.held = ids
                await self.release.wait()
        finally:
            self.in_flight.difference_update(ids)
        self.answered.update(ids)
        self.events.append(("end", number, precedences))
        return web.Response(body=codec.pack({"results": [["accepted", "", ""]] * len(ids)}),
                            content_type="application/x-msgpack")

    @staticmethod
    async def directory(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=codec.pack({"stored": 0, "refused": 0}),
                            content_type="application/x-msgpack")


@contextlib.asynccontextmanager
async def watching_peer(net: Network, nid: str,
                        envelopes: list[Envelope]) -> AsyncIterator[WatchingPeer]:
    peer = WatchingPeer({e.to_bytes(): e for e in envelopes})
    app = web.Application(client_max_size=1 << 26)
    app.router.add_post(protocol.TRANSACTION_PATH, peer.transaction)
    app.router.add_post(protocol.DIRECTORY_PATH, peer.directory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", net.nodes[nid].federation_port,
                       ssl_context=server_context(net.certs / nid, require_client_cert=True))
    await site.start()
    try:
        yield peer
    finally:
        peer.release.set()
        await runner.cleanup()


async def test_transactions_in_flight_share_nothing_and_go_by_precedence(
        make_network: type[Network]) -> None:
    """12 flash and 48 routine envelopes queued at NL (batches of 8, 3 in flight), sent to a
    fake BE: both flash transactions go first and alone, no routine one starts before they
    are answered, the routine transaction held unanswered does not stop the other five,
    no envelope is ever in two transactions in flight, and each is answered and audited as
    relayed once."""
    net = make_network.create(
        node_ids=("nl", "be"),
        delivery={**TEST_DELIVERY, "batch_size": 8, "in_flight": 3,
                  "request_timeout_s": 120.0})  # no retry while the fake holds one
    jan, marie, directory = await setup_pair(net)
    net.kill("be", signal.SIGKILL)
    routine = sealed(jan, directory, marie.id, 48, Precedence.ROUTINE, "routine")
    flash = sealed(jan, directory, marie.id, 12, Precedence.FLASH, "flash")
    assert await submit_all(jan, [e.to_bytes() for e in routine + flash]) == set(range(60))
    async with watching_peer(net, "be", routine + flash) as be:
        await asyncio.to_thread(wait_for, lambda: len(be.answered) == 52, timeout=120,
                                what="all but the held transaction answered")
        assert len(be.held) == 8 and not set(be.held) & set(be.answered)
        await asyncio.to_thread(wait_for, lambda: hop_states(net, "nl", "be") ==
                                Counter(delivered=52, queued=8), what="NL to record them")
        be.release.set()
        await asyncio.to_thread(wait_for, lambda: hop_states(net, "nl", "be") ==
                                Counter(delivered=60), what="the held ones recorded")
    assert be.overlaps == [], "an envelope in two transactions in flight at once"
    assert set(be.answered) == {e.id for e in routine + flash}
    assert max(be.answered.values()) == 1
    assert all(len(p) == 1 for _, _, p in be.events), "a transaction of mixed precedence"
    flash_events = [i for i, (_, _, p) in enumerate(be.events) if Precedence.FLASH in p]
    first_routine = min(i for i, (_, _, p) in enumerate(be.events)
                        if Precedence.FLASH not in p)
    assert len(flash_events) == 4  # two transactions, each started and ended
    assert max(flash_events) < first_routine, \
        "a routine transaction started while a flash one was unanswered"
    relayed_once(net, "nl", {e.id for e in routine + flash})


@dataclass
class RoutineHoldingPeer(WatchingPeer):
    """A fake BE that answers flash transactions at once and holds every routine one
    unanswered until ``release`` is set."""

    async def transaction(self, request: web.Request) -> web.Response:
        body = codec.unpack(await request.read(), what="request", max_bytes=1 << 26)
        envelopes = [self.envelopes[raw] for raw in body["envelopes"]]
        ids = [e.id for e in envelopes]
        if all(e.header.precedence == Precedence.ROUTINE for e in envelopes):
            self.held.extend(ids)
            await self.release.wait()
        self.answered.update(ids)
        return web.Response(body=codec.pack({"results": [["accepted", "", ""]] * len(ids)}),
                            content_type="application/x-msgpack")


async def test_a_flash_envelope_never_waits_behind_routine_transactions(
        make_network: type[Network]) -> None:
    """With its one in-flight slot taken by a routine transaction the fake BE holds
    unanswered, NL still sends a flash envelope queued after it, at once, in the slot kept
    for urgent ones; the routine one is delivered once released."""
    net = make_network.create(
        node_ids=("nl", "be"),
        delivery={**TEST_DELIVERY, "batch_size": 8, "in_flight": 1,
                  # Beyond every wait below: without the kept slot, the flash envelopes
                  # would wait for the held routine transaction to time out.
                  "request_timeout_s": 600.0})
    jan, marie, directory = await setup_pair(net)
    net.kill("be", signal.SIGKILL)
    routine = sealed(jan, directory, marie.id, 8, Precedence.ROUTINE, "routine")
    flash = sealed(jan, directory, marie.id, 2, Precedence.FLASH, "flash")
    peer = RoutineHoldingPeer({e.to_bytes(): e for e in routine + flash})
    app = web.Application(client_max_size=1 << 26)
    app.router.add_post(protocol.TRANSACTION_PATH, peer.transaction)
    app.router.add_post(protocol.DIRECTORY_PATH, peer.directory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", net.nodes["be"].federation_port,
                       ssl_context=server_context(net.certs / "be", require_client_cert=True))
    await site.start()
    try:
        assert await submit_all(jan, [e.to_bytes() for e in routine]) == set(range(8))
        await asyncio.to_thread(wait_for, lambda: bool(peer.held),
                                what="NL's routine transaction held by BE")
        assert await submit_all(jan, [e.to_bytes() for e in flash]) == {0, 1}
        await asyncio.to_thread(wait_for, lambda: len(peer.answered) == 2,
                                what="the flash envelopes answered beside the held routine")
        assert set(peer.answered) == {e.id for e in flash}
        await asyncio.to_thread(wait_for, lambda: hop_states(net, "nl", "be") ==
                                Counter(delivered=2, queued=8), what="NL to record them")
        peer.release.set()
        await asyncio.to_thread(wait_for, lambda: hop_states(net, "nl", "be") ==
                                Counter(delivered=10), what="the routine ones recorded")
    finally:
        peer.release.set()
        await runner.cleanup()
    assert max(peer.answered.values()) == 1
    relayed_once(net, "nl", {e.id for e in routine + flash})
