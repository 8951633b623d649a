"""The whole machine's budget in the bench (issue 16): the bench's own CPU, its sink's, and
how busy the machine's cores were, beside the two brokers' CPU per envelope.

Counts and shapes only (ticks, sums, which keys are there), never a speed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from liaison_net.bench import cost
from liaison_net.bench.report import ROWS, rows, unit_of
from liaison_net.bench.sinks import SinkSpec
from liaison_net.bench.workload import Sink
from tests.waits import PATIENCE_S

WHOLE = ("bench_cpu_us_per_envelope", "sink_cpu_us_per_envelope", "all_cpu_us_per_envelope",
         "machine_cpu_us_per_envelope", "others_cpu_us_per_envelope", "machine_busy_pct",
         "machine_iowait_pct", "machine_cores")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_machine_ticks_count_this_process_busy() -> None:
    """/proc/stat's cpu line: busy and iowait within the total, and the machine's busy
    ticks grow by at least the CPU this process burned meanwhile (one tick of slack)."""
    start = cost.machine_ticks()
    assert start is not None
    assert 0 < start.busy <= start.total and 0 <= start.iowait <= start.total
    _burn(0.2)
    end = cost.machine_ticks()
    assert end is not None
    ticks = os.sysconf("SC_CLK_TCK")
    assert end.busy - start.busy >= 0.2 * ticks - 1
    assert end.total - start.total >= end.busy - start.busy


def test_whole_adds_every_process_and_reads_the_cores() -> None:
    """The arithmetic, on readings made by hand: 100 envelopes; the bench spent 10 ms, the
    sink 5 ms, the nodes 300 and 200 µs each; the machine was busy 40 of 100 ticks."""
    hz = os.sysconf("SC_CLK_TCK")
    start = cost.Window(1.0, 2.0, cost.MachineTicks(busy=1000, iowait=50, total=5000))
    end = cost.Window(1.01, 2.005, cost.MachineTicks(busy=1040, iowait=55, total=5100))
    figures = cost.whole(start, end, [300.0, 200.0], envelopes=100)
    assert set(figures) == set(WHOLE)
    assert figures["bench_cpu_us_per_envelope"] == 100
    assert figures["sink_cpu_us_per_envelope"] == 50
    assert figures["all_cpu_us_per_envelope"] == 650
    assert figures["machine_busy_pct"] == 40.0
    assert figures["machine_iowait_pct"] == 5.0
    machine = round(40 / hz * 1e6 / 100)
    assert figures["machine_cpu_us_per_envelope"] == machine
    assert figures["others_cpu_us_per_envelope"] == max(0, machine - 650)
    assert figures["machine_cores"] == os.cpu_count()
    prefixed = cost.whole(start, end, [300.0, 200.0], envelopes=100, prefix="catch_up_")
    assert set(prefixed) == {f"catch_up_{key}" for key in WHOLE}


def test_whole_has_no_sum_when_a_part_is_unknown() -> None:
    """A node restarted (its counters began again) or a sink that never said what it spent:
    no sum of all processes, rather than one that leaves a part out."""
    start = cost.Window(0.0, 0.0, cost.MachineTicks(0, 0, 100))
    end = cost.Window(0.5, None, cost.MachineTicks(50, 0, 200))
    unknown_sink = cost.whole(start, end, [10.0, 10.0], envelopes=10)
    assert unknown_sink["sink_cpu_us_per_envelope"] is None
    assert unknown_sink["all_cpu_us_per_envelope"] is None
    assert unknown_sink["others_cpu_us_per_envelope"] is None
    assert unknown_sink["machine_busy_pct"] == 50.0
    restarted = cost.whole(start, cost.Window(0.5, 0.1, end.machine), [10.0, None],
                           envelopes=10)
    assert restarted["all_cpu_us_per_envelope"] is None
    assert restarted["bench_cpu_us_per_envelope"] == 50_000
    no_machine = cost.whole(cost.Window(0.0, 0.0, None), end, [1.0, 1.0], envelopes=10)
    assert no_machine["machine_busy_pct"] is None
    assert no_machine["machine_cpu_us_per_envelope"] is None
    none = cost.whole(start, end, [1.0, 1.0], envelopes=0)
    assert none["bench_cpu_us_per_envelope"] is None and none["all_cpu_us_per_envelope"] is None


def test_a_sink_says_what_it_spent_from_ready_to_done(tmp_path: Path) -> None:
    """A real sink process (SQLite kind, waiting for a database that never comes): its CPU
    is known once it stopped, counted from when it was ready (its start-up, importing
    Python, is not the scenario's), so it is at most its whole life's."""
    keys = tmp_path / "keys"
    keys.write_bytes(os.urandom(16))
    sink = Sink(SinkSpec("sqlite", str(keys), str(tmp_path / "out"),
                         database=str(tmp_path / "none.sqlite3"), officer="nobody"))
    sink.start(PATIENCE_S)
    try:
        assert sink.cpu_s is None  # not done yet
        alive = sink.cpu_now()
        assert alive is not None and alive > 0  # from /proc while it runs
    finally:
        sink.stop()
    spent, life = sink.cpu_s, sink.cpu_now()
    assert spent is not None and life is not None
    assert 0 <= spent <= life


def test_the_table_shows_every_process_and_the_busy_cores() -> None:
    """Two rows per scenario: all processes' CPU per envelope (compared with the
    baselines') and how busy the cores were (a percentage, no ratio); the outage's are the
    catch-up's."""
    keyed = {(r.scenario, r.key): r for r in ROWS}
    for scenario in ("light", "relay", "relay_batched", "relay_stream", "paced"):
        assert keyed[(scenario, "all_cpu_us_per_envelope")].ratio
        assert not keyed[(scenario, "machine_busy_pct")].ratio
    assert ("outage", "catch_up_all_cpu_us_per_envelope") in keyed
    assert ("outage", "catch_up_machine_busy_pct") in keyed
    assert unit_of("machine_busy_pct") == "%"
    assert unit_of("catch_up_all_cpu_us_per_envelope") == "µs"
    results = {"relay": {"liaison_net": {"all_cpu_us_per_envelope": 600.0,
                                         "machine_busy_pct": 99.0},
                         "rabbitmq": {"all_cpu_us_per_envelope": 150.0,
                                      "machine_busy_pct": 90.0}}}
    by_figure = {r["figure"]: r for r in rows(results)}
    assert by_figure["all_cpu_us_per_envelope"]["ratio_rabbitmq"] == 4.0
    assert "ratio_rabbitmq" not in by_figure["machine_busy_pct"]
