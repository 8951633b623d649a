"""`liaison bench`: the quick run completes and reports figures of the documented shape.

Speed is never asserted (it depends on the machine); what is asserted is that every figure
is there and that our broker lost and duplicated nothing, counted in the destination's
SQLite inbox. Baseline brokers run only if installed (--quick installs nothing); either
way each of their rows is figures or a stated reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.bench import cost
from liaison_net.bench.network import BENCH_DELIVERY
from liaison_net.bench.report import (
    ROWS,
    Row,
    notes,
    rows,
    table,
    unit_of,
    versus_target,
)
from liaison_net.bench.runner import _transactions, selection
from liaison_net.bench.scenarios import QUICK, OurSystem
from liaison_net.bench.workload import percentile, sleep_until
from liaison_net.config import DeliveryConfig
from tests.waits import PATIENCE_S

CORE = ("light", "relay", "paced", "outage", "crash")
ROLES = ("origin", "destination")


def test_selection_orders_and_expands() -> None:
    assert selection([]) == ["light", "relay", "paced", "outage", "crash", "baselines",
                             "ceiling", "memory"]
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


def test_cost_reads_this_process_and_counts_disk_growth(tmp_path: Path) -> None:
    """CPU, peak RSS and disk growth per envelope, from /proc and real files."""
    db = tmp_path / "node.sqlite3"
    db.write_bytes(b"x" * 4096)
    probe = cost.Probe(os.getpid(), False, (db, tmp_path / "node.sqlite3-wal"))
    before = {"origin": cost.snapshot(probe)}
    assert before["origin"].cpu_s is not None and before["origin"].cpu_s > 0
    db.write_bytes(b"x" * (4096 + 3000))
    (tmp_path / "node.sqlite3-wal").write_bytes(b"w" * 1000)
    figures = cost.figures(before, {"origin": probe}, envelopes=10, envelope_bytes=200.0)
    assert figures["origin_disk_bytes_per_envelope"] == 400
    assert figures["origin_disk_x_envelope"] == 2.0
    assert figures["envelope_bytes"] == 200
    assert figures["origin_cpu_us_per_envelope"] >= 0
    assert figures["origin_peak_rss_mb"] > 0


def test_cost_counts_database_pages_not_file_sizes(tmp_path: Path) -> None:
    """A SQLite database's growth is its pages, those still in the WAL included: after a
    checkpoint the WAL file is rewritten from its start, so the files need not grow."""
    path = tmp_path / "node.sqlite3"
    wal = tmp_path / "node.sqlite3-wal"
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE t (b BLOB)")
        writer.executemany("INSERT INTO t VALUES (?)", [(os.urandom(4000),)] * 50)
        writer.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the WAL file keeps its size
        probe = cost.Probe(os.getpid(), False, (path, wal), database=path)
        before = {"destination": cost.snapshot(probe)}
        writer.executemany("INSERT INTO t VALUES (?)", [(os.urandom(4000),)] * 10)
        figures = cost.figures(before, {"destination": probe}, envelopes=10,
                               envelope_bytes=4000.0)
    finally:
        writer.close()
    assert figures["destination_files_bytes_per_envelope"] < 4000  # the reused WAL
    assert figures["destination_disk_bytes_per_envelope"] >= 4000
    assert figures["destination_disk_x_envelope"] >= 1.0


def test_cost_has_no_cpu_figure_for_a_restarted_process(tmp_path: Path) -> None:
    """A process the scenario restarted began its counters again: no CPU figure for it."""
    probe = cost.Probe(os.getpid(), False, ())
    before = {"destination": cost.Snapshot(pid=1, cpu_s=0.0, disk_bytes=0)}
    figures = cost.figures(before, {"destination": probe}, envelopes=10, envelope_bytes=1.0)
    assert figures["destination_cpu_us_per_envelope"] is None
    gone = cost.Probe(None, False, ())
    figures = cost.figures({"origin": cost.snapshot(gone)}, {"origin": gone}, envelopes=10,
                           envelope_bytes=1.0)
    assert figures["origin_cpu_us_per_envelope"] is None
    assert figures["origin_peak_rss_mb"] is None


def test_transaction_figures_leave_out_a_node_that_restarted() -> None:
    """The destination is restarted in the outage and crash scenarios: its sender counters
    begin again, and the difference would be negative (it once printed -1,141)."""
    before = {"handed_count": 10.0, "handed_sum": 100.0, "read_count": 0.0, "read_sum": 0.0,
              "back_handed_count": 0.0, "back_handed_sum": 0.0,
              "back_read_count": 1200.0, "back_read_sum": 1200.0}
    after = {**before, "handed_count": 20.0, "handed_sum": 300.0,
             "back_read_count": 59.0, "back_read_sum": 59.0}
    figures = _transactions(before, after)
    assert figures == {"transactions": 10, "envelopes_per_transaction": 20.0,
                       "handed_share": 1.0}


def test_catch_up_is_a_rate_even_when_the_backlog_arrives_at_one_instant() -> None:
    """The quick outage (300 envelopes) can arrive in one read of the sink: every arrival
    stamped alike. The rate is then taken from the destination's return (it once came out
    as no figure, and the quick bench's check failed)."""
    from liaison_net.bench.scenarios import catch_up_rate

    back = 1_000_000_000
    assert catch_up_rate([back + 500_000_000, back + 1_500_000_000], back) == 2.0
    assert catch_up_rate([back + 250_000_000] * 300, back) == 1200.0
    assert catch_up_rate([], back) is None


def test_cost_counts_a_whole_process_group() -> None:
    """A baseline broker's start script and its children are one process group."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        assert cost._group(child.pid) == [child.pid]
        assert cost.cpu_seconds(child.pid, group=True) is not None
        assert (cost.peak_rss_kib(child.pid, group=True) or 0) > 0
    finally:
        child.kill()
        child.wait(timeout=10)


def test_cost_sums_the_workers_of_one_node() -> None:
    """Several workers of one node: its CPU is theirs together (a child that burns CPU
    counts), and none when one of them is gone (a partial sum would flatter the node)."""
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() "
                               "+ 0.3\nwhile time.process_time() < end: pass\n"
                               "time.sleep(30)"], stdin=subprocess.DEVNULL)
    try:
        deadline = 200
        while (cost.cpu_seconds(burner.pid) or 0.0) < 0.3 and deadline:
            deadline -= 1
            time.sleep(0.05)  # polling, bounded: 10 s at most
        alone = cost.snapshot(cost.Probe(os.getpid(), False, ()))
        both = cost.snapshot(cost.Probe(os.getpid(), False, (), workers=(burner.pid,)))
        assert alone.cpu_s is not None and both.cpu_s is not None
        assert both.cpu_s >= alone.cpu_s + 0.29
        with_gone = cost.snapshot(cost.Probe(os.getpid(), False, (), workers=(2**22 + 7,)))
        assert with_gone.cpu_s is None
    finally:
        burner.kill()
        burner.wait(timeout=10)


def test_workers_columns_sit_beside_ours() -> None:
    """`--workers`: each worker count of the PostgreSQL origin gets a column and a JSON
    entry per figure, in order after the single-worker column."""
    figures = {"relay_per_s": 100.0, "lost": 0}
    results = {"relay": {"liaison_net": figures, "liaison_net_pg_w4": {"relay_per_s": 40.0},
                         "liaison_net_pg": {"relay_per_s": 10.0},
                         "liaison_net_pg_w2": {"relay_per_s": 20.0}}}
    headings = [c.header for c in table(results).columns]
    assert headings[2:6] == ["liaison_net", "on PostgreSQL", "on PostgreSQL, 2 workers",
                             "on PostgreSQL, 4 workers"]
    results["paced"] = {"liaison_net_pg_w2": {"error": "boom"}}
    assert "paced / liaison_net (PostgreSQL, 2 workers): error: boom" in notes(results)
    [entry] = [r for r in rows(results) if r["figure"] == "relay_per_s"]
    assert (entry["liaison_net_pg"], entry["liaison_net_pg_w2"],
            entry["liaison_net_pg_w4"]) == (10.0, 20.0, 40.0)


def test_the_bench_nodes_run_the_defaults_but_for_retries() -> None:
    # What the bench reports is what an operator gets: only the back-off is shortened (an
    # outage's catch-up, not the back-off curve, is measured); any other period would
    # measure a node nobody runs (a 0.3 s directory_push_s cost the light load's tail).
    defaults = DeliveryConfig()
    assert set(BENCH_DELIVERY) <= {"backoff_initial_s", "backoff_max_s", "request_timeout_s"}
    assert BENCH_DELIVERY["request_timeout_s"] == defaults.request_timeout_s


def test_targets_and_units() -> None:
    at_most = Row("light", "latency_p99_ms", "p99", "<= 10")
    assert versus_target(at_most, 25.0) == (2.5, False)
    assert versus_target(at_most, 5.0) == (0.5, True)
    at_least = Row("relay", "relay_per_s", "rate", ">= 5,000")
    assert versus_target(at_least, 500) == (0.1, False)
    assert versus_target(Row("relay", "lost", "lost", "0"), 0) == (None, True)
    assert versus_target(Row("relay", "lost", "lost", "0"), 3) == (None, False)
    assert versus_target(Row("relay", "x", "x"), 3) == (None, None)
    assert unit_of("origin_cpu_us_per_envelope") == "µs"
    assert unit_of("destination_disk_bytes_per_envelope") == "bytes"
    assert unit_of("origin_disk_x_envelope") == "x"
    assert unit_of("latency_p99_ms") == "ms"
    assert unit_of("peak_rss_mb") == "MB"
    assert unit_of("lost") == "count"
    assert unit_of("origin_idle_cpu_ms_per_s") == "ms/s"
    assert unit_of("relay_per_s") == "/s"
    targets = {(r.scenario, r.key): r.target for r in ROWS}
    assert targets[("light", "latency_p99_ms")] == "<= 10"
    assert targets[("memory", "peak_rss_mb")] == "<= 200"
    assert targets[("relay", "origin_disk_x_envelope")] == "<= 1.5"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "tmp" / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "liaison_net.cli", "bench", "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=540, cwd=tmp_path, stdin=subprocess.DEVNULL)
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
    light = results["light"]["liaison_net"]
    assert light["rate_target_per_s"] == doc["plan"]["light_rate_per_s"] == 20
    latencies = [light[f"latency_{p}_ms"] for p in ("p50", "p95", "p99", "max")]
    assert all(_number(v) and v >= 0 for v in latencies), latencies
    assert latencies == sorted(latencies)
    assert _number(light["accept_p99_ms"]) and light["accept_p99_ms"] >= 0
    for role in ROLES:
        idle = light[f"{role}_idle_cpu_ms_per_s"]
        assert _number(idle) and idle >= 0, (role, idle)
    for scenario in CORE:
        ours = results[scenario]["liaison_net"]
        assert _number(ours["envelope_bytes"]) and ours["envelope_bytes"] > 1000
        for role in ROLES:
            for figure in ("peak_rss_mb", "disk_bytes_per_envelope", "disk_x_envelope"):
                value = ours[f"{role}_{figure}"]
                assert _number(value) and value >= 0, (scenario, role, figure, value)
            assert ours[f"{role}_peak_rss_mb"] > 0
            cpu = ours[f"{role}_cpu_us_per_envelope"]
            if scenario in ("outage", "crash") and role == "destination":
                assert cpu is None  # restarted: its counters began again
            else:
                assert _number(cpu) and cpu >= 0, (scenario, role, cpu)
    # The whole machine's budget: the bench and its sink beside the nodes, the cores' use.
    for scenario in CORE:
        ours = results[scenario]["liaison_net"]
        for part in ("bench", "sink"):
            value = ours[f"{part}_cpu_us_per_envelope"]
            assert _number(value) and value >= 0, (scenario, part, value)
        assert 0 <= ours["machine_busy_pct"] <= 100
        assert ours["machine_cores"] == machine["cpu_count"]
        if scenario not in ("outage", "crash"):  # there the destination restarted
            parts = [ours[f"{p}_cpu_us_per_envelope"]
                     for p in ("origin", "destination", "bench", "sink")]
            assert abs(ours["all_cpu_us_per_envelope"] - sum(parts)) <= 1, (scenario, parts)
    catch_up = results["outage"]["liaison_net"]
    assert _number(catch_up["catch_up_all_cpu_us_per_envelope"])
    assert 0 <= catch_up["catch_up_machine_busy_pct"] <= 100
    relay = results["relay"]["liaison_net"]
    for figure in ("relay_per_s", "accept_per_s", "latency_p50_ms", "latency_p99_ms"):
        assert _number(relay[figure]), figure
    assert _number(results["paced"]["liaison_net"]["latency_p99_ms"])
    assert _number(results["outage"]["liaison_net"]["catch_up_per_s"])
    assert results["crash"]["liaison_net"]["kills"] == 2

    memory = results["memory"]["liaison_net"]
    assert memory["queued"] == memory["sent"] > 0
    assert _number(memory["peak_rss_mb"]) and memory["peak_rss_mb"] > 0
    assert _number(memory["origin_disk_bytes_per_envelope"])
    assert memory["origin_disk_bytes_per_envelope"] > 0

    ceiling = results["ceiling"]["machine"]
    for figure in ("ed25519_verify_per_s", "sealed_box_open_per_s",
                   "sqlite_batched_rows_per_s", "sqlite_commits_per_s",
                   "sqlite_batched_cpu_us_per_row", "sqlite_commit_p99_ms",
                   "sqlite_two_commits_p99_ms"):
        assert _number(ceiling[figure]) and ceiling[figure] > 0, figure
    # In CPU time decode + verify can never cost less than the verify it contains (on the
    # wall clock a quiet window for it and a busy one for the raw verify gave 1.18x).
    assert ceiling["envelope_verify_cost_x"] >= 1.0

    for broker in ("mosquitto", "rabbitmq"):
        for scenario in CORE:
            theirs = results[scenario][broker]
            assert isinstance(theirs.get("unavailable"), str) or (
                "error" not in theirs and isinstance(theirs["lost"], int)), (broker, theirs)
            if "unavailable" not in theirs:  # the bench and sink count for them too
                assert _number(theirs["bench_cpu_us_per_envelope"]), (broker, scenario)
                assert _number(theirs["machine_busy_pct"]), (broker, scenario)

    rows = doc["rows"]
    assert {(r["scenario"], r["figure"]) for r in rows} >= {
        ("relay", "relay_per_s"), ("paced", "latency_p99_ms"), ("outage", "catch_up_per_s"),
        ("crash", "lost"), ("memory", "peak_rss_mb"), ("ceiling", "ed25519_verify_per_s"),
        ("light", "latency_p99_ms"), ("light", "origin_cpu_us_per_envelope"),
        ("relay", "destination_disk_x_envelope")}
    by_figure = {(r["scenario"], r["figure"]): r for r in rows}
    p99 = by_figure[("light", "latency_p99_ms")]
    assert p99["unit"] == "ms" and p99["target"] == "<= 10"
    assert p99["ratio_to_target"] == round(light["latency_p99_ms"] / 10, 3)
    assert p99["target_met"] is (light["latency_p99_ms"] <= 10)
    assert by_figure[("light", "origin_cpu_us_per_envelope")]["unit"] == "µs"
    assert by_figure[("relay", "destination_disk_x_envelope")]["unit"] == "x"
    assert "light" in proc.stdout and "vs target" in proc.stdout
    for broker in ("mosquitto", "rabbitmq"):
        if isinstance(results["light"][broker].get("unavailable"), str):
            assert any("not run" in note for note in doc["notes"]), doc["notes"]


@pytest.mark.parametrize("verify", [None, 0, 2])
def test_verify_workers_reach_both_nodes_configs(tmp_path: Path, verify: int | None) -> None:
    """`--verify-workers N` (the plan's ``verify_workers``): both our nodes' configs, as the
    node itself loads them, say ``[workers] verify = N``; unset leaves the node's default
    (what operators run)."""
    plan = dataclasses.replace(QUICK, verify_workers=verify)
    system = OurSystem(tmp_path, plan)
    system.net.create()
    expected = config.parse(  # unset: whatever the node's own default is
        {"node": {"id": "nl", "data_dir": "d", "cert_dir": "c"},
         "listen": {"federation": "127.0.0.1:1", "client": "127.0.0.1:2"}},
        tmp_path / "x.toml").verify_workers if verify is None else verify
    for nid in ("nl", "be"):
        assert config.load(system.net.nodes[nid].config).verify_workers == expected
    # Each node's CPU and RSS are its process group's: its verify workers' too.
    assert all(probe.group for probe in system.probes().values())


def test_cost_counts_a_nodes_children() -> None:
    """A node's verify workers are its children in its process group: its CPU with
    ``group`` is theirs too (a child that burns CPU counts), as the bench's probes ask."""
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "subprocess.Popen([sys.executable, '-c', 'import time\\nend = time.process_time() "
         "+ 0.3\\nwhile time.process_time() < end: pass\\ntime.sleep(30)'])\n"
         "time.sleep(30)"], start_new_session=True, stdin=subprocess.DEVNULL)
    def childrens_share() -> float:
        alone = cost.cpu_seconds(leader.pid)
        group = cost.cpu_seconds(leader.pid, group=True)
        assert alone is not None and group is not None
        return group - alone

    try:
        # The child burns 0.3 s of CPU; on a loaded machine that takes a while (bounded by
        # the suite's patience, not a short wall-clock limit). Clock ticks are 10 ms.
        deadline = time.monotonic() + PATIENCE_S
        while childrens_share() < 0.27 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert childrens_share() >= 0.27
        members = cost._group(leader.pid)
        assert len(members) == 2
    finally:
        os.killpg(leader.pid, 9)
        leader.wait(timeout=10)


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A real thread pool that counts what it was given (the pacer's precise tails)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


def test_the_pacer_never_wakes_before_the_due_time_and_keeps_short_waits_on_the_loop() -> None:
    async def run(pool: _CountingExecutor, waits_ms: tuple[int, ...]) -> list[int]:
        early = []
        for wait_ms in waits_ms:
            due = time.time_ns() + wait_ms * 1_000_000
            await sleep_until(due, pool)
            early.append(due - time.time_ns())
        return early

    with _CountingExecutor() as pool:
        # Below PRECISE_TAIL_S (a fast pace): on the loop, no thread hop per envelope.
        early = asyncio.run(run(pool, (0, 1)))
        assert all(e <= 0 for e in early), early
        assert pool.calls == 0
        # Longer waits may end in the thread (unless the loop itself woke late): never early.
        early = asyncio.run(run(pool, (5, 12, 30)))
        assert all(e <= 0 for e in early), early
        assert pool.calls <= 3
