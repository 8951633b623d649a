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
