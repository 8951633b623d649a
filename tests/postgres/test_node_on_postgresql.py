"""A node on PostgreSQL end to end, as real processes: NL runs on PostgreSQL, BE on its
SQLite file; an alert goes each way, duplicates are refused, and `liaison admin audit
verify` checks NL's chain in PostgreSQL."""

from __future__ import annotations

import json

import psycopg

from liaison_net.drills.pg_cluster import Cluster
from tests.integration.network import Network, run_cli, wait_for
from tests.integration.officers import enrol
from tests.integration.test_first_alert import directory_with, inbox_ids
from tests.postgres.pg_nodes import on_postgresql

AUDIT = {"audit": {"checkpoint_every": 2, "checkpoint_seconds": 0.3}}


async def test_an_alert_each_way_between_postgresql_and_sqlite_nodes(
        make_network: type[Network], pg_cluster: Cluster) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections=AUDIT)
    dsn = on_postgresql(net, "nl", pg_cluster)
    jan = enrol(net, "nl/jdevries")  # the admin CLI writes the card into PostgreSQL
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl, marie.session() as be:
        to_be = jan.seal(await directory_with(nl, marie.id), [marie.id], b"from NL")
        assert (await nl.submit(to_be.to_bytes())).status == "accepted"
        to_nl = marie.seal(await directory_with(be, jan.id), [jan.id], b"from BE")
        assert (await be.submit(to_nl.to_bytes())).status == "accepted"
        assert await inbox_ids(be, 1) == [to_be.header.id_text]
        assert await inbox_ids(nl, 1) == [to_nl.header.id_text]
        assert (await nl.submit(to_be.to_bytes())).status == "duplicate"
        assert await nl.ack(to_nl.header.id_text) is True
    with psycopg.connect(dsn, password=pg_cluster.password()) as db:
        row = db.execute("SELECT acked FROM inbox WHERE officer = %s AND envelope_id = %s",
                         ("nl/jdevries", to_nl.header.id)).fetchone()
        assert row is not None and row[0] is not None  # NL's inbox is in PostgreSQL
    # The audit checkpoints are witnessed both ways: BE's cosignature kept in PostgreSQL,
    # NL's witness rows too (so BE holds NL's cosignature of its own).
    def cosigned() -> bool:
        with psycopg.connect(dsn, password=pg_cluster.password()) as db:
            ours = db.execute("SELECT COUNT(*) FROM cosignatures WHERE node = 'nl' AND "
                              "witness = 'be'").fetchone()
            theirs = db.execute("SELECT COUNT(*) FROM cosignatures WHERE node = 'be' AND "
                                "witness = 'nl'").fetchone()
        return bool(ours and ours[0] and theirs and theirs[0])

    wait_for(cosigned, what="checkpoints witnessed both ways with NL on PostgreSQL")
    out = run_cli("admin", "audit", "verify", "--json", "--config",
                  str(net.nodes["nl"].config))
    verdict = json.loads(out.stdout)
    assert verdict["ok"] is True and verdict["entries"] > 3
    assert verdict["witnessed_checkpoints"] >= 1 and verdict["latest_witnessed"]["witnesses"] == [
        "be"]
