"""The ceiling's crypto figures count CPU time, so waiting (for a core, for anything) never
moves them: what made the decode + verify ratio read 1.50x and 1.84x minutes apart."""

from __future__ import annotations

import hashlib
import time

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
