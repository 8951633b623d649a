"""The ceiling's crypto figures count CPU time, so waiting (for a core, for anything) never
moves them: what made the decode + verify ratio read 1.50x and 1.84x minutes apart."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from liaison_net.bench.ceiling import cpu_cost_x, cpu_rate

DATA = bytes(256 * 1024)


def _hash(_i: int) -> int:
    hashlib.sha256(DATA).digest()
    return 1


def _hash_then_wait(i: int) -> int:
    """The same CPU work as ``_hash``, then a wait that costs no CPU (as a thread queued
    behind other processes on a shared core would wait)."""
    _hash(i)
    time.sleep(0.002)
    return 1


def _hash_twice(i: int) -> int:
    _hash(i)
    return _hash(i)


def test_time_waited_is_not_counted() -> None:
    # On the wall clock the waiting op would cost several times the hash (2 ms against
    # about 0.3 ms); in CPU time the two are the same work.
    assert cpu_cost_x(_hash, _hash_then_wait, 0.3) < 1.5


def test_the_ratio_is_the_second_op_over_the_first() -> None:
    # Counts of work, not speed: twice the hashing is about twice the CPU, whatever the
    # machine's speed (wide bounds: a shared machine's caches still move it a little).
    assert 1.4 < cpu_cost_x(_hash, _hash_twice, 0.3) < 3.0


def test_a_rate_is_per_second_of_cpu() -> None:
    # Ops per CPU second: the waiting op does as many per CPU second as the plain one,
    # within a factor, where per wall-clock second it would do a seventh.
    plain = cpu_rate(_hash, 0.1)
    waiting = cpu_rate(_hash_then_wait, 0.1)
    assert waiting > plain / 2


def test_commit_latencies_time_each_commit_and_two_in_series(tmp_path: Path) -> None:
    """Every timed commit is a row in each database (two: both, one after the other), at
    most ``limit`` of them; the figures are ordered percentiles of those samples."""
    from liaison_net.bench import ceiling

    one, two = (ceiling._sqlite(tmp_path / f"{n}.sqlite3") for n in ("a", "b"))
    try:
        alone = ceiling.commit_latencies([one], 5.0, limit=20)
        series = ceiling.commit_latencies([one, two], 5.0, limit=15)
        assert len(alone) == 20 and len(series) == 15
        rows = [db.execute("SELECT count(*) FROM envelopes").fetchone()[0] for db in (one, two)]
        assert rows == [35, 15]
        figures = ceiling._latency_figures("two", series)
        assert figures["two_count"] == 15
        assert 0 < figures["two_p50_ms"] <= figures["two_p99_ms"] <= figures["two_p999_ms"]
        assert ceiling.batched_cpu_us_per_row(one, 0.05) > 0
        assert rows[0] + 256 <= one.execute("SELECT count(*) FROM envelopes").fetchone()[0]
    finally:
        one.close()
        two.close()
