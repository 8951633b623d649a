"""Operator commands on a running network: status shows queues, backup/restore keeps data."""

from __future__ import annotations

import json
import signal
import sqlite3

from tests.integration.network import Network, run_cli, wait_for
from tests.integration.officers import enrol
from tests.integration.test_first_alert import directory_with


async def test_status_backup_and_restore(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    config = str(net.nodes["nl"].config)
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id)
        net.kill("be", signal.SIGKILL)
        for i in range(7):
            await nl.submit(jan.seal(directory, [marie.id], f"alert {i}".encode()).to_bytes())

    status = json.loads(run_cli("admin", "status", "--config", config, "--json").stdout)
    assert status["queued"] == {"be": 7}
    wait_for(lambda: json.loads(run_cli("admin", "status", "--config", config, "--json")
                                .stdout)["backoff"].get("be", {}).get("attempts", 0) >= 1,
             timeout=30, what="the failed attempts to show in status")
    table = run_cli("admin", "status", "--config", config).stdout
    assert "queued" in table and "be" in table

    backup = net.root / "backups" / "nl.sqlite3"
    out = run_cli("admin", "backup", "--config", config, "--out", str(backup)).stdout
    assert "audit entries verified" in out
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    again = run_cli("admin", "backup", "--config", config, "--out", str(backup), check=False)
    assert again.returncode == 2 and "exists" in again.stderr

    # Lose the node's database, restore the backup, and the queue drains to BE as before.
    net.kill("nl", signal.SIGKILL)
    refused = run_cli("admin", "restore", "--config", config, "--from", str(backup),
                      check=False)
    assert refused.returncode == 2 and "--replace" in refused.stderr
    run_cli("admin", "restore", "--config", config, "--from", str(backup), "--replace")
    net.start("nl")
    net.start("be")

    def inbox() -> int:
        with sqlite3.connect(net.database("be")) as db:
            return int(db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])

    wait_for(lambda: inbox() == 7, timeout=60, what="the restored queue to drain to BE")
    run_cli("admin", "audit", "verify", "--config", config)
