"""Supervision and private files on real node processes (issue 14, items 4 and 5).

A background loop that fails for good is restarted, then given up on and shown: /healthz
answers `degraded` naming it, `liaison_loop_up` is 0 for it, the audit says so, and every
other loop, listener and peer keeps working. The fault is real: a row of NL's `requests`
table hand-edited into nonsense (an id that is a negative number), which makes the request
desk's escalation check raise ValueError on every pass.

And the node's database is its own: 0600 files (main, -wal, -shm) in a 0700 directory,
also after `liaison admin backup` and `restore`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import stat
from pathlib import Path

from liaison_net.pki.certificates import node_hostname
from tests.integration.network import (
    Network,
    audit_rows,
    healthz,
    officer_tls,
    raw_https,
    run_cli,
    wait_for,
)
from tests.integration.officers import enrol
from tests.integration.test_first_alert import directory_with, inbox_ids

SUPERVISION = {"supervision": {"restart_base_s": 0.05, "restart_max_s": 0.2, "intensity": 3,
                               "period_s": 600},
               "requests": {"check_s": 0.1}}


def metric(net: Network, nid: str, name: str, loop: str) -> float:
    status, body = raw_https(net.nodes[nid].client_port, officer_tls(net), node_hostname(nid),
                             b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(f'{name}{{loop="{loop}"}} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} for {loop} not exported")


def corrupt_a_request_row(net: Network, nid: str) -> None:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        db.execute("INSERT INTO requests (envelope_id, officer, role, sender, urgency, due) "
                   "VALUES (-1, 'nl/nobody', 'incoming', 'be/nobody', 'urgent', 0)")
        db.commit()


async def test_a_loop_failing_for_good_is_shown_degraded_and_the_rest_runs_on(
        make_network: type[Network]) -> None:
    """NL's request desk crashes on every pass: it is restarted (with backoff) `intensity`
    times, then given up on. /healthz: degraded, failed_loops == ["request-desk"];
    liaison_loop_up{loop="request-desk"} 0 and its restarts counted; loop.crashed entries
    and one loop.failed in the audit. NL's officer still sends, BE still receives, and
    every other loop is still up."""
    net = make_network.create(node_ids=("nl", "be"), sections=SUPERVISION)
    jan, marie = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters")
    for nid in net.nodes:
        net.start(nid)
    assert healthz(net, "nl")["failed_loops"] == []
    assert metric(net, "nl", "liaison_loop_up", "request-desk") == 1
    corrupt_a_request_row(net, "nl")
    wait_for(lambda: healthz(net, "nl")["status"] == "degraded", timeout=30,
             what="NL's /healthz to show the failed loop")
    health = healthz(net, "nl")
    assert health["failed_loops"] == ["request-desk"], health
    assert metric(net, "nl", "liaison_loop_up", "request-desk") == 0
    assert metric(net, "nl", "liaison_loop_restarts_total", "request-desk") == 3
    rows = [r for r in audit_rows(net, "nl") if r.event.startswith("loop.")]
    assert [r.event for r in rows] == ["loop.crashed"] * 3 + ["loop.failed"], rows
    assert all(r.detail["loop"] == "request-desk" and r.detail["error"] == "ValueError"
               for r in rows), rows
    for loop in ("group-commit", "sender-be", "expiry", "effects", "retention", "key-watch",
                 "signal-desk", "refusal-audit"):
        assert metric(net, "nl", "liaison_loop_up", loop) == 1, loop
    proc = net.nodes["nl"].proc
    assert proc is not None and proc.poll() is None
    async with jan.session() as nl, marie.session() as be:
        directory = await directory_with(nl, marie.id)
        env = jan.seal(directory, [marie.id], b"still on duty")
        assert (await nl.submit(env.to_bytes())).status == "accepted"
        assert env.header.id_text in await inbox_ids(be, 1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_files_are_private_also_after_backup_and_restore(
        make_network: type[Network]) -> None:
    """NL's data directory is 0700 and its database, -wal and -shm are 0600 while it runs;
    a backup is 0600 (in a 0700 directory it makes); a restore is 0600 again."""
    net = make_network.create(node_ids=("nl", "be"))
    enrol(net, "nl/jdevries")
    net.start("nl")
    db = net.database("nl")
    wait_for(lambda: Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists(), timeout=30,
             what="NL's WAL files")
    assert mode(db.parent) == 0o700
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert mode(path) == 0o600, (path, oct(mode(path)))
    config = str(net.nodes["nl"].config)
    backup = net.root / "backups" / "nl.sqlite3"
    run_cli("admin", "backup", "--config", config, "--out", str(backup))
    assert mode(backup) == 0o600 and mode(backup.parent) == 0o700
    net.kill("nl")
    run_cli("admin", "restore", "--config", config, "--from", str(backup), "--replace")
    assert mode(db) == 0o600 and mode(db.parent) == 0o700
