"""Several workers of one node on one PostgreSQL (issue 17), with real processes: NL runs
as two `liaison node serve` processes of the same config (each with its own `[listen]`) on
one database of the session's cluster; BE runs on its SQLite file and lists both NL URLs.

- A live follower on worker B sees every envelope committed through worker A, exactly once
  and in order (the stream learns of other workers' commits by polling the inbox).
- A revocation written through one worker is refused by the other (its cached keys follow
  the key epoch in PostgreSQL).
- Under load in both directions, the NL worker holding BE's sender lease is SIGKILLed: the
  other worker takes the lease over (a higher fencing token), BE fails over to it, and every
  client retries with the same envelope bytes until answered `accepted` or `duplicate`.
  Nothing is lost, nothing lands in an inbox twice, each relay is audited once, and
  `admin audit verify` finds the shared chain whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Any

import psycopg
import pytest

from liaison_net import errors
from liaison_net.drills.harness import NodeProcess
from liaison_net.drills.pg_cluster import Cluster
from liaison_net.store.lease_store import sender_lease
from tests.integration.network import Network, run_cli
from tests.integration.officers import OfficerAgent, enrol
from tests.integration.test_faults import assert_exactly_once, sealed
from tests.integration.test_first_alert import directory_with
from tests.integration.test_node_workers import (
    WORKERS,
    add_worker,
    at_worker,
    follower_sees_the_other_workers_commits,
    list_peer_urls,
    revocation_through_the_other_worker,
    until,
)
from tests.postgres.pg_nodes import on_postgresql

COUNT = 120  # each way, during the kill


def pg_query(dsn: str, cluster: Cluster, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with psycopg.connect(dsn, password=cluster.password()) as db:
        return db.execute(sql, params).fetchall()


async def test_a_follower_on_worker_b_sees_every_envelope_committed_through_worker_a(
        make_network: type[Network], pg_cluster: Cluster) -> None:
    net = make_network.create(node_ids=("nl",), sections=WORKERS)
    on_postgresql(net, "nl", pg_cluster)  # before the second worker copies the config
    jan = enrol(net, "nl/jdevries")
    piet = enrol(net, "nl/pbakker")
    a, b = net.nodes["nl"], add_worker(net, "nl")
    net.start("nl")
    net.start("nl#2")
    await follower_sees_the_other_workers_commits(jan, a, piet, b, count=8,
                                                  engine="PostgreSQL")


async def test_a_revocation_through_one_worker_is_refused_by_the_other_on_postgresql(
        make_network: type[Network], pg_cluster: Cluster) -> None:
    net = make_network.create(node_ids=("nl",), sections=WORKERS)
    on_postgresql(net, "nl", pg_cluster)
    jan = enrol(net, "nl/jdevries")
    piet = enrol(net, "nl/pbakker")
    a, b = net.nodes["nl"], add_worker(net, "nl")
    net.start("nl")
    net.start("nl#2")
    await revocation_through_the_other_worker(jan, piet, a, b)


async def submit_with_retries(agent: OfficerAgent, workers: list[NodeProcess],
                              envelopes: list[bytes], *, start: int = 0,
                              on_answer: Any = None, timeout: float = 180) -> dict[str, int]:
    """Submit every envelope, spread over ``workers``; one not answered (its worker died, or
    refused it mid-failover) is retried, same bytes, at the next worker, until every one is
    answered `accepted` or `duplicate`. The count of each answer."""
    answers = {"accepted": 0, "duplicate": 0, "retries": 0}
    gate = asyncio.Semaphore(8)
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(at_worker(agent, w)) for w in workers]

        async def one(i: int) -> None:
            turn = start + i
            async with gate:
                while True:
                    session = sessions[turn % len(sessions)]
                    try:
                        status = (await session.submit(envelopes[i])).status
                    except errors.LiaisonError:
                        answers["retries"] += 1
                        turn += 1
                        await asyncio.sleep(0.1)
                        continue
                    assert status in ("accepted", "duplicate"), status
                    answers[status] += 1
                    if on_answer is not None:
                        on_answer(answers["accepted"] + answers["duplicate"])
                    return

        async with asyncio.timeout(timeout):
            await asyncio.gather(*(one(i) for i in range(len(envelopes))))
    return answers


@pytest.mark.slow
async def test_sigkill_of_the_lease_holder_under_load_loses_and_duplicates_nothing(
        make_network: type[Network], pg_cluster: Cluster) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections=WORKERS)
    dsn = on_postgresql(net, "nl", pg_cluster)
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    nl_workers = [net.nodes["nl"], add_worker(net, "nl")]
    list_peer_urls(net, "be", "nl", [w.federation_url for w in nl_workers])
    for key in ("nl", "nl#2", "be"):
        net.start(key)
    lease = sender_lease("be")

    def holder() -> tuple[int, int] | None:
        """(PID, token) of the NL worker holding the sender lease to BE, if any."""
        rows = pg_query(dsn, pg_cluster, "SELECT holder, token FROM leases WHERE name = %s",
                        (lease,))
        return (int(rows[0][0].split("/")[2]), int(rows[0][1])) if rows else None

    first = await until(holder, what="an NL worker to take the sender lease to BE")
    holding = next(w for w in nl_workers if w.pid == first[0])
    other = next(w for w in nl_workers if w is not holding)
    async with at_worker(jan, other) as nl, marie.session() as be:
        to_marie = await directory_with(nl, marie.id)
        to_jan = await directory_with(be, jan.id)
    outgoing = sealed(jan, to_marie, marie.id, COUNT)  # through both NL workers to BE
    incoming = sealed(marie, to_jan, jan.id, COUNT)  # BE to NL, over both NL URLs
    killed_at: list[float] = []

    def kill_at_a_third(answered: int) -> None:
        if answered >= COUNT // 3 and not killed_at:
            killed_at.append(time.monotonic())
            assert holding.proc is not None
            holding.proc.send_signal(signal.SIGKILL)  # not waited for: load goes on

    out_answers, in_answers = await asyncio.gather(
        submit_with_retries(jan, nl_workers, outgoing, on_answer=kill_at_a_third),
        submit_with_retries(marie, [net.nodes["be"]], incoming))
    assert killed_at, "the lease holder was never killed"
    await until(lambda: (h := holder()) is not None and h[0] == other.pid,
                what="the surviving NL worker to take BE's sender lease over")
    print(f"\nlease taken over {time.monotonic() - killed_at[0]:.2f} s after the holder's "
          f"SIGKILL (lease_s 1.5); outgoing answers {out_answers}, incoming {in_answers}")
    assert out_answers["accepted"] + out_answers["duplicate"] == COUNT
    assert in_answers["accepted"] + in_answers["duplicate"] == COUNT

    await asyncio.to_thread(assert_exactly_once, net, "be", marie.id, outgoing)

    def nl_inbox() -> list[bytes]:
        return [bytes(r[0]) for r in pg_query(
            dsn, pg_cluster, "SELECT i.envelope_id FROM inbox i JOIN envelopes e ON "
            "e.id = i.envelope_id WHERE i.officer = %s AND e.kind != 'evidence'", (jan.id,))]

    await until(lambda: len(nl_inbox()) >= COUNT, what=f"{COUNT} envelopes in jan's inbox")
    await asyncio.sleep(1.0)  # room for a duplicate to show up, if one would
    rows = nl_inbox()
    assert len(rows) == len(set(rows)) == COUNT

    def states() -> list[Any]:
        return pg_query(dsn, pg_cluster, "SELECT h.state, COUNT(*) FROM hops h JOIN envelopes e "
                        "ON e.id = h.envelope_id WHERE e.kind = 'message' AND h.node = %s "
                        "GROUP BY h.state", ("be",))

    await until(lambda: states() == [("delivered", COUNT)],
                what="every outgoing hop delivered in NL's database")
    relays = pg_query(dsn, pg_cluster, "SELECT a.envelope_id, COUNT(*) FROM audit_named a JOIN "
                      "envelopes e ON e.id = a.envelope_id WHERE a.event = 'envelope.relayed' "
                      "AND e.kind = 'message' GROUP BY a.envelope_id")
    assert len(relays) == COUNT and all(count == 1 for _, count in relays)
    taken = holder()
    assert taken is not None and taken[0] == other.pid and taken[1] > first[1]
    verdict = json.loads(run_cli("admin", "audit", "verify", "--config", str(other.config),
                                 "--json").stdout)
    assert verdict["ok"] is True, verdict
