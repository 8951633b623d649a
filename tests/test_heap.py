"""The node's heap settings (liaison_net/heap.py): start-up's objects frozen, young
collections every ``GEN0_THRESHOLD`` containers. Run in this process, and undone after:
the test run itself keeps CPython's defaults."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

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
