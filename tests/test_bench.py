"""`liaison bench`: the quick run completes and reports figures of the documented shape.

Speed is never asserted (it depends on the machine); what is asserted is that every figure
is there and that our broker lost and duplicated nothing, counted in the destination's
SQLite inbox. Baseline brokers run only if installed (--quick installs nothing); either
way each of their rows is figures or a stated reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liaison_net.bench.runner import selection
from liaison_net.bench.workload import percentile

CORE = ("relay", "paced", "outage", "crash")


def test_selection_orders_and_expands() -> None:
    assert selection([]) == ["relay", "paced", "outage", "crash", "baselines", "ceiling",
                             "memory"]
    assert selection(["memory,relay"]) == ["relay", "memory"]
    assert selection(["baselines"]) == [*CORE, "baselines"]
    assert selection(["crash", "baselines"]) == ["crash", "baselines"]
    with pytest.raises(ValueError, match="unknown scenario"):
        selection(["throughput"])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "tmp" / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "liaison_net.cli", "bench", "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=280, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "liaison bench" in proc.stdout  # the table's title
    doc = json.loads(out.read_text())

    assert doc["quick"] is True
    machine = doc["machine"]
    assert isinstance(machine["cpu_count"], int) and machine["cpu_count"] >= 1
    for fact in ("cpu_model", "python", "date", "platform"):
        assert isinstance(machine[fact], str) and machine[fact]

    results = doc["results"]
    for scenario in CORE:
        ours = results[scenario]["liaison_net"]
        assert "error" not in ours, ours
        assert ours["sent"] == ours["accepted"] == ours["received"] > 0
        assert ours["lost"] == 0
        assert ours["duplicated"] == 0
    relay = results["relay"]["liaison_net"]
    for figure in ("relay_per_s", "accept_per_s", "latency_p50_ms", "latency_p99_ms"):
        assert _number(relay[figure]), figure
    assert _number(results["paced"]["liaison_net"]["latency_p99_ms"])
    assert _number(results["outage"]["liaison_net"]["catch_up_per_s"])
    assert results["crash"]["liaison_net"]["kills"] == 2

    memory = results["memory"]["liaison_net"]
    assert memory["queued"] == memory["sent"] > 0
    assert _number(memory["peak_rss_mb"]) and memory["peak_rss_mb"] > 0

    ceiling = results["ceiling"]["machine"]
    for figure in ("ed25519_verify_per_s", "sealed_box_open_per_s",
                   "sqlite_batched_rows_per_s", "sqlite_commits_per_s"):
        assert _number(ceiling[figure]) and ceiling[figure] > 0, figure

    for broker in ("mosquitto", "rabbitmq"):
        for scenario in CORE:
            theirs = results[scenario][broker]
            assert isinstance(theirs.get("unavailable"), str) or (
                "error" not in theirs and isinstance(theirs["lost"], int)), (broker, theirs)

    rows = doc["rows"]
    assert {(r["scenario"], r["figure"]) for r in rows} >= {
        ("relay", "relay_per_s"), ("paced", "latency_p99_ms"), ("outage", "catch_up_per_s"),
        ("crash", "lost"), ("memory", "peak_rss_mb"), ("ceiling", "ed25519_verify_per_s")}
