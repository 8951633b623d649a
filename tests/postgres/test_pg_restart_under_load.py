"""PostgreSQL crashes under load (`pg_ctl stop -m immediate`: no checkpoint, as a power
cut of the server process) and comes back: the node on it loses nothing it answered
`accepted` and puts nothing into an inbox twice, in both directions. Clients retry with the
same envelope bytes until answered `accepted` or `duplicate`, as a real client does."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from liaison_net.drills.pg_cluster import make_cluster
from tests.integration.network import Network, run_cli
from tests.integration.test_faults import (
    assert_exactly_once,
    sealed,
    setup_pair,
    submit_all,
    submit_until_all_answered,
)
from tests.postgres.pg_nodes import on_postgresql
from tests.waits import PATIENCE_S

pytestmark = pytest.mark.slow

COUNT = 240
OUTAGE_S = 3.0  # how long the server stays down (an outage's length, not a wait)


def pg_inbox(dsn: str, password: str, officer: str) -> list[bytes]:
    with psycopg.connect(dsn, password=password) as db:
        return [bytes(r[0]) for r in db.execute(
            "SELECT i.envelope_id FROM inbox i JOIN envelopes e ON e.id = i.envelope_id "
            "WHERE i.officer = %s AND e.kind != 'evidence'", (officer,)).fetchall()]


async def test_postgresql_crash_and_restart_under_load(make_network: type[Network]) -> None:
    cluster = make_cluster()  # its own: this test stops it
    try:
        net = make_network.create(node_ids=("nl", "be"))
        dsn = on_postgresql(net, "nl", cluster)
        jan, marie, to_marie = await setup_pair(net)
        async with marie.session() as be:
            from tests.integration.test_first_alert import directory_with
            to_jan = await directory_with(be, jan.id)
        outgoing = sealed(jan, to_marie, marie.id, COUNT)  # accepted into PostgreSQL
        incoming = sealed(marie, to_jan, jan.id, COUNT)  # relayed into PostgreSQL
        crashed = asyncio.Event()

        def crash_at_a_third(accepted: int) -> None:
            if accepted >= COUNT // 3 and not crashed.is_set():
                crashed.set()

        async def outage() -> None:
            await crashed.wait()
            await asyncio.to_thread(cluster.stop, "immediate")
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(cluster.start)

        crash = asyncio.create_task(outage())
        first, _ = await asyncio.gather(
            submit_all(jan, outgoing, on_accepted=crash_at_a_third),
            submit_all(marie, incoming))
        await asyncio.wait_for(crash, PATIENCE_S)
        refused = COUNT - len(first)
        # Every client retries what was not answered, with the same bytes.
        await submit_until_all_answered(jan, outgoing, net, "nl")
        await submit_until_all_answered(marie, incoming, net, "be")
        assert_exactly_once(net, "be", marie.id, outgoing)

        async with asyncio.timeout(120):
            while len(rows := pg_inbox(dsn, cluster.password(), jan.id)) < COUNT:
                await asyncio.sleep(0.25)
        assert len(rows) == len(set(rows)) == COUNT
        verdict = run_cli("admin", "audit", "verify", "--config", str(net.nodes["nl"].config))
        assert "audit chain OK" in verdict.stdout
        print(f"refused during the outage: {refused} of {COUNT}")
    finally:
        cluster.destroy()
