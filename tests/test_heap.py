"""The node's heap settings (liaison_net/heap.py): start-up's objects frozen, young
collections every ``GEN0_THRESHOLD`` containers. Run in this process, and undone after:
the test run itself keeps CPython's defaults."""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from liaison_net.bench.sinks import KEY_BYTES, SinkSpec, _Recorder
from liaison_net.heap import GEN0_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_settle_heap_freezes_what_is_alive_and_raises_only_the_young_threshold(
        restored_gc: None) -> None:
    _, older, oldest = gc.get_threshold()
    alive = [[i] for i in range(1000)]  # containers alive at the end of "start-up"
    frozen = settle_heap()
    assert frozen == gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold() == (GEN0_THRESHOLD, older, oldest)
    assert GEN0_THRESHOLD > 700  # above CPython's default, which it replaces


def test_a_cycle_made_after_the_freeze_is_still_collected(restored_gc: None) -> None:
    settle_heap()
    cycle: list[object] = []
    cycle.append(cycle)
    gc.collect()  # the cycle is alive yet
    assert any(o is cycle for o in gc.get_objects())
    del cycle
    assert gc.collect() >= 1  # found and freed: only start-up's objects are exempt


def test_the_bench_sink_settles_its_heap_once_when_first_ready(
        restored_gc: None, tmp_path: Path) -> None:
    """The sink notes arrival times: a full collection of its own would delay them."""
    keys = tmp_path / "keys"
    keys.write_bytes(b"k" * KEY_BYTES)
    recorder = _Recorder(SinkSpec("sqlite", str(keys), str(tmp_path / "out")), None, None)
    ready = multiprocessing.get_context("spawn").Event()
    gc.unfreeze()
    recorder.ready(ready)
    assert ready.is_set() and gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    gc.unfreeze()
    recorder.ready(ready)  # a reconnection says ready again: settled once only
    assert gc.get_freeze_count() == 0
