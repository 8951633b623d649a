"""The supervisor: one failure is one failure (issue 14, item 4).

``RestartPolicy`` is pure and tested without an event loop. The supervisor itself runs real
loops in a real TaskGroup: one crashing now and then, one crashing with a real libsodium
error every time, one steady; its audit entries go to a real node database. The store's
group-commit writer is supervised the same way.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from pathlib import Path

import nacl.bindings
import pytest

from liaison_net.core.audit import detail
from liaison_net.errors import Unavailable
from liaison_net.metrics import NodeMetrics
from liaison_net.store.node_store import NodeStore
from liaison_net.supervisor import ChildState, RestartPolicy, Supervisor
from tests.waits import PATIENCE_S

FAST = RestartPolicy(base_s=0.01, max_s=0.04, intensity=3, period_s=600)


def test_restart_delays_grow_jittered_and_capped() -> None:
    policy = RestartPolicy(base_s=1.0, max_s=8.0, intensity=100, period_s=3600)
    crashes: deque[float] = deque()
    delays = [policy.decide(crashes, float(t), 0.999) for t in range(6)]
    assert delays == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0, 8.0], rel=0.01)
    assert policy.decide(crashes, 7.0, 0.0) == pytest.approx(4.0)  # jitter: half at least


def test_too_many_crashes_within_the_period_give_up_and_old_ones_are_forgotten() -> None:
    policy = RestartPolicy(base_s=1.0, max_s=8.0, intensity=3, period_s=60)
    crashes: deque[float] = deque()
    assert [policy.decide(crashes, t, 0.5) is None for t in (0.0, 1.0, 2.0)] == [False] * 3
    assert policy.decide(crashes, 3.0, 0.5) is None  # a fourth within 60 s
    spread: deque[float] = deque()
    assert all(policy.decide(spread, t, 0.5) is not None for t in (0.0, 61.0, 122.0, 183.0))


def test_a_policy_out_of_bounds_is_refused() -> None:
    for bad in ({"base_s": 0}, {"intensity": 0}, {"base_s": 5, "max_s": 1}, {"period_s": 0}):
        with pytest.raises(ValueError):
            RestartPolicy(**bad)


async def test_a_crashing_loop_is_restarted_alone_and_a_hopeless_one_given_up(
        tmp_path: Path) -> None:
    """"flaky" crashes twice and then runs; "sodium" fails a real libsodium call every
    time and is given up on after 3 restarts; "steady" ticks throughout and never notices.
    Each crash is one loop.crashed audit entry; the give-up is one loop.failed."""
    store = NodeStore(tmp_path / "node.sqlite3", "nl")
    await store.open(writer=False)
    metrics = NodeMetrics()

    async def audit(event: str, fields: dict[str, object]) -> None:
        await store.audit(now=1, event=event, actor="nl", audit_detail=detail(**fields))

    sup = Supervisor(policy=FAST, audit=audit, metrics=metrics)
    ticks = itertools.count()
    flaky_runs = itertools.count()
    given_up: list[str] = []

    async def steady() -> None:
        while True:
            next(ticks)
            await asyncio.sleep(0.005)

    async def flaky() -> None:
        if next(flaky_runs) < 2:
            raise RuntimeError("flaky")
        await asyncio.Event().wait()

    async def sodium() -> None:
        await asyncio.sleep(0)
        nacl.bindings.crypto_sign_open(b"\x00" * 80, b"\x00" * 32)  # raises BadSignatureError

    sup.add("group-commit", store.db.run_writer, on_failed=store.db.writer_failed)
    sup.add("steady", steady)
    sup.add("flaky", flaky)
    sup.add("sodium", sodium, on_failed=lambda: given_up.append("sodium"))
    with pytest.raises(ValueError, match="already supervised"):
        sup.add("steady", steady)

    async def until(condition: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(PATIENCE_S):  # bounded polling; ``what`` names it in a traceback
            while not condition():
                await asyncio.sleep(0.01)

    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as tasks:
            sup.start(tasks)
            # on_failed runs after loop.failed is audited, a moment after the state shows
            # FAILED: wait for it, or the shutdown below may cancel the audit on a slow box.
            await until(lambda: sup.failed() == ["sodium"] and given_up == ["sodium"],
                        "sodium to be given up, audited and its on_failed called")
            before = next(ticks)
            await until(lambda: next(ticks) > before + 5, "steady to tick on")
            await until(lambda: sup.children["flaky"].state is ChildState.RUNNING
                        and sup.children["flaky"].restarts == 2, "flaky to run")
            raise KeyError("stop")  # shutdown: the TaskGroup cancels every child
    assert sup.states() == {"flaky": "running", "group-commit": "running", "sodium": "failed",
                            "steady": "running"}
    assert given_up == ["sodium"]
    value = metrics.registry.get_sample_value
    assert value("liaison_loop_restarts_total", {"loop": "sodium"}) == 3
    assert value("liaison_loop_restarts_total", {"loop": "flaky"}) == 2
    assert value("liaison_loop_up", {"loop": "sodium"}) == 0
    assert value("liaison_loop_up", {"loop": "steady"}) == 1
    # The writer is cancelled with the rest; the audit entries were committed before.
    await store.close()
    await store.open()
    events = [(e.event, e.detail) for e in await store.audit_entries()]
    assert [e for e, _ in events].count("loop.crashed") == 5
    assert [(e, d) for e, d in events if e == "loop.failed"] == [
        ("loop.failed", detail(error="BadSignatureError", loop="sodium",
                               reason="Signature was forged or corrupt", restarts=3))]
    await store.close()


async def test_a_writer_given_up_on_refuses_writes_instead_of_queueing_them(
        tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "node.sqlite3", "nl")
    await store.open(writer=False)
    sup = Supervisor(policy=FAST)
    sup.add("group-commit", store.db.run_writer, on_failed=store.db.writer_failed)
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as tasks:
            sup.start(tasks)
            await store.audit(now=1, event="test.written", actor="nl", audit_detail="{}")
            raise KeyError("stop")
    store.db.writer_failed()
    with pytest.raises(Unavailable, match="writer is not running"):
        async with asyncio.timeout(PATIENCE_S):  # queued for a writer that never comes: a hang
            await store.audit(now=2, event="test.refused", actor="nl", audit_detail="{}")
    await store.close()


async def test_a_shutdown_during_the_give_up_audit_still_gives_up() -> None:
    """The give-up's audit entry may wait on a busy writer; a shutdown in that wait must not
    skip ``on_failed`` (for the writer: queued writes refused instead of hanging)."""
    audit_waiting = asyncio.Event()

    async def audit(event: str, fields: dict[str, object]) -> None:
        if event == "loop.failed":
            audit_waiting.set()
            await asyncio.Event().wait()  # a writer that never answers

    sup = Supervisor(policy=RestartPolicy(base_s=0.01, max_s=0.01, intensity=1,
                                          period_s=600), audit=audit)
    given_up: list[str] = []

    async def hopeless() -> None:
        raise RuntimeError("always")

    sup.add("hopeless", hopeless, on_failed=lambda: given_up.append("hopeless"))
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as tasks:
            sup.start(tasks)
            async with asyncio.timeout(PATIENCE_S):
                await audit_waiting.wait()
            raise KeyError("stop")  # cancels the supervising task inside the audit wait
    assert given_up == ["hopeless"]
