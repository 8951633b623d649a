"""Nothing accepted is lost: SIGKILL and restart either node, cut the destination off for
8 s (30 s in the long form); every envelope reaches the inbox exactly once, counted in the
destination's database."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Callable

import pytest

from liaison_net.client.directory import Directory
from liaison_net.errors import LiaisonError
from tests.integration.network import Network, wait_for
from tests.integration.officers import OfficerAgent, enrol
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow

#: Each drill's short form (`make test`) and long form (`pytest --long`, docs/testing.md):
#: the same faults, fewer envelopes and a shorter outage.
FORMS = [pytest.param("short"), pytest.param("long", marks=pytest.mark.long)]
ENVELOPES = {"short": 600, "long": 2000}
OUTAGE_S = {"short": 8.0, "long": 30.0}


def inbox_rows(net: Network, nid: str, officer: str) -> list[bytes]:
    """The envelopes in an officer's inbox, not counting delivery evidence about their own."""
    with sqlite3.connect(net.database(nid), timeout=10) as db:
        return [r[0] for r in db.execute(
            "SELECT i.envelope_id FROM inbox i JOIN envelopes e ON e.id = i.envelope_id "
            "WHERE i.officer = ? AND e.kind != 'evidence'", (officer,))]


def backoff_attempts(net: Network, nid: str, peer: str) -> int:
    with sqlite3.connect(net.database(nid), timeout=10) as db:
        row = db.execute("SELECT attempts FROM peers WHERE node = ?", (peer,)).fetchone()
    return int(row[0]) if row else 0


async def submit_all(officer: OfficerAgent, envelopes: list[bytes],
                     on_accepted: Callable[[int], None] | None = None,
                     concurrency: int = 16) -> set[int]:
    """Submit every envelope; return the indexes the node answered (accepted/duplicate)."""
    done: set[int] = set()
    gate = asyncio.Semaphore(concurrency)
    async with officer.session() as node:
        async def one(i: int) -> None:
            async with gate:
                try:
                    await node.submit(envelopes[i])
                except LiaisonError:
                    return  # node down mid-request: the caller resubmits later
                done.add(i)
                if on_accepted is not None:
                    on_accepted(len(done))
        await asyncio.gather(*(one(i) for i in range(len(envelopes))))
    return done


async def submit_until_all_answered(officer: OfficerAgent, envelopes: list[bytes],
                                    net: Network, origin: str, timeout: float = 120) -> None:
    pending = set(range(len(envelopes)))
    async with asyncio.timeout(timeout):
        while pending:
            net.wait_ready(origin)
            answered = await submit_all(officer, [envelopes[i] for i in sorted(pending)])
            order = sorted(pending)
            pending -= {order[j] for j in answered}


def sealed(jan: OfficerAgent, directory: Directory, to: str, n: int) -> list[bytes]:
    return [jan.seal(directory, [to], f"alert {i}".encode()).to_bytes() for i in range(n)]


def assert_exactly_once(net: Network, nid: str, officer: str, envelopes: list[bytes],
                        timeout: float = 120) -> None:
    wait_for(lambda: len(inbox_rows(net, nid, officer)) >= len(envelopes), timeout=timeout,
             interval=0.25, what=f"{len(envelopes)} envelopes in {officer}'s inbox")
    rows = inbox_rows(net, nid, officer)
    assert len(rows) == len(envelopes)
    assert len(set(rows)) == len(rows)


async def setup_pair(net: Network) -> tuple[OfficerAgent, OfficerAgent, Directory]:
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id)
    return jan, marie, directory


@pytest.mark.parametrize("form", FORMS)
async def test_destination_killed_twice_mid_stream(make_network: type[Network],
                                                   form: str) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan, marie, directory = await setup_pair(net)
    count = ENVELOPES[form]
    envelopes = sealed(jan, directory, marie.id, count)
    kills = {count // 4: False, count * 3 // 5: False}

    def chaos(accepted: int) -> None:
        for at, done in kills.items():
            if accepted >= at and not done:
                kills[at] = True
                net.kill("be", signal.SIGKILL)
                net.start("be", wait=False)

    answered = await submit_all(jan, envelopes, on_accepted=chaos)
    assert answered == set(range(count))  # the origin stayed up throughout
    assert all(kills.values())
    net.wait_ready("be")
    assert_exactly_once(net, "be", marie.id, envelopes)


@pytest.mark.parametrize("form", FORMS)
async def test_origin_killed_after_accepting(make_network: type[Network], form: str) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan, marie, directory = await setup_pair(net)
    half = ENVELOPES[form] // 2
    envelopes = sealed(jan, directory, marie.id, 2 * half)
    first = await submit_all(jan, envelopes[:half])
    assert first == set(range(half))
    net.kill("nl", signal.SIGKILL)  # some of those are still queued at NL
    net.start("nl")
    await submit_until_all_answered(jan, envelopes[half:], net, "nl")
    assert_exactly_once(net, "be", marie.id, envelopes)


@pytest.mark.parametrize("form", FORMS)
async def test_destination_unreachable_then_catch_up(make_network: type[Network],
                                                     form: str) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan, marie, directory = await setup_pair(net)
    envelopes = sealed(jan, directory, marie.id, 300)
    net.kill("be", signal.SIGKILL)
    assert await submit_all(jan, envelopes) == set(range(300))
    # NL backs off while BE is away (attempts persisted in its database) ...
    wait_for(lambda: backoff_attempts(net, "nl", "be") >= 3, timeout=30,
             what="NL to back off from BE")
    await asyncio.sleep(OUTAGE_S[form])  # the outage itself, the scenario under test
    assert inbox_rows(net, "be", marie.id) == []
    net.start("be")
    # ... and catches up once it returns: nothing lost, nothing doubled.
    assert_exactly_once(net, "be", marie.id, envelopes)
    wait_for(lambda: backoff_attempts(net, "nl", "be") == 0, timeout=30,
             what="NL to clear its backoff")
