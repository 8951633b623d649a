"""`liaison bench --store sqlite,postgresql`: our relay and crash scenarios run once on each
engine in one run, printed side by side; on PostgreSQL too nothing is lost or duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_quick_bench_on_both_stores(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "liaison_net.cli", "bench", "--quick", "--scenario",
         "relay,crash", "--batch-size", "1", "--store", "postgresql,sqlite",
         "--json", str(out)],
        capture_output=True, text=True, timeout=400, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "on PostgreSQL" in proc.stdout  # its column beside ours
    doc = json.loads(out.read_text())
    assert doc["stores"] == ["sqlite", "postgresql"]
    for scenario in ("relay", "crash"):
        for system in ("liaison_net", "liaison_net_pg"):
            figures = doc["results"][scenario][system]
            assert "error" not in figures, figures
            assert figures["accepted"] == figures["received"] > 0
            assert figures["lost"] == figures["duplicated"] == 0
    pg = doc["results"]["relay"]["liaison_net_pg"]
    assert pg["relay_per_s"] > 0
    assert pg["origin_disk_bytes_per_envelope"] is None  # the server's files, not the node's


def test_quick_bench_with_several_workers_on_postgresql(tmp_path: Path) -> None:
    """`--workers 1,2`: relay and paced once per worker count of the PostgreSQL origin,
    beside the SQLite node, each with CPU per envelope (summed over the workers). The
    figures themselves are the machine's, not asserted."""
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "liaison_net.cli", "bench", "--quick", "--scenario",
         "relay,paced", "--batch-size", "1", "--store", "sqlite,postgresql",
         "--workers", "1,2", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "on PostgreSQL, 2 workers" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["workers"] == [1, 2]
    for scenario in ("relay", "paced"):
        assert set(doc["results"][scenario]) == {"liaison_net", "liaison_net_pg",
                                                 "liaison_net_pg_w2"}
        for figures in doc["results"][scenario].values():
            assert "error" not in figures, figures
            assert figures["accepted"] == figures["received"] > 0
            assert figures["lost"] == figures["duplicated"] == 0
            assert figures["origin_cpu_us_per_envelope"] > 0
    assert doc["results"]["relay"]["liaison_net_pg_w2"]["relay_per_s"] > 0
    rows = [r for r in doc["rows"] if r["figure"] == "relay_per_s"]
    assert rows and rows[0]["liaison_net_pg_w2"] > 0
    # Light, outage and crash are one node's latency and the destination: run once.
    assert "crash" not in doc["results"]


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "liaison_net.cli", "bench", "--quick", "--scenario", "relay",
         "--workers", "1,2"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "several workers need --store postgresql" in proc.stderr
