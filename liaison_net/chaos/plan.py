"""The schedule of faults of one soak: pure, and the same for the same seed.

A run that failed must be repeatable, so every choice of *what* to break and *when* comes
from one ``random.Random(seed)`` here, before anything runs; the soak only replays it.
Kills and partitions are spread over the chaos window (one per slot, at a random point
in it), each naming a random node or pair that is up (or healed) at that moment, and each
ends (restart, heal) within the window, so the run's length is bounded by ``duration_s``.
"""

from __future__ import annotations

import enum
import itertools
import random
from dataclasses import dataclass


class Action(enum.Enum):
    KILL = "kill"  # SIGKILL the node
    RESTART = "restart"  # start it again (same config, same database)
    CUT = "cut"  # partition a pair of nodes (both ways)
    HEAL = "heal"  # let the pair talk again


@dataclass(frozen=True)
class Fault:
    at_s: float  # seconds after the workload started
    action: Action
    target: tuple[str, ...]  # (node,) for kill/restart, (a, b) sorted for cut/heal

    def describe(self) -> str:
        return f"{self.action.value} {'|'.join(self.target)}"  # node ids may hold '-'


@dataclass(frozen=True)
class FaultPlan:
    seed: int
    duration_s: float
    faults: tuple[Fault, ...]

    @property
    def kills(self) -> int:
        return sum(f.action is Action.KILL for f in self.faults)

    @property
    def partitions(self) -> int:
        return sum(f.action is Action.CUT for f in self.faults)


@dataclass(frozen=True)
class Shape:
    """How long faults last and where the window starts: the plan's only tunables."""

    warmup_s: float = 2.0  # traffic flows before the first fault
    down_s: tuple[float, float] = (0.5, 3.0)  # a killed node stays down this long
    cut_s: tuple[float, float] = (0.5, 5.0)  # a pair stays cut this long
    max_down: int = 2  # never more nodes down at once (the rest keep taking traffic)


def make_plan(*, seed: int, nodes: tuple[str, ...], kills: int, partitions: int,
              duration_s: float, shape: Shape = Shape()) -> FaultPlan:
    """``kills`` kill/restart and ``partitions`` cut/heal pairs within ``duration_s``."""
    if kills < 0 or partitions < 0:
        raise ValueError("kills and partitions must be 0 or more")
    if len(nodes) < 2 or len(set(nodes)) != len(nodes):
        raise ValueError("a plan needs two or more distinct nodes")
    if not 1 <= shape.max_down < len(nodes):
        raise ValueError(f"max_down must be 1 to {len(nodes) - 1}")
    longest = max(shape.down_s[1] if kills else 0.0, shape.cut_s[1] if partitions else 0.0)
    # A fault may wait up to ``longest`` for a node or pair to come back, then last up
    # to ``longest``: both must fit before the end.
    window = duration_s - shape.warmup_s - 2 * longest
    if window <= 0:
        raise ValueError(f"a {duration_s:g} s run leaves no time for faults: give it more "
                         f"than {shape.warmup_s + 2 * longest:g} s")
    rng = random.Random(seed)
    faults: list[Fault] = []
    down_until: dict[str, float] = {}
    for t in _times(rng, kills, shape.warmup_s, window):
        up = [n for n in nodes if down_until.get(n, -1.0) < t]
        if len(nodes) - len(up) >= shape.max_down:
            # Too many down: wait for the first to come back (still inside the window,
            # since a restart is at most down_s[1] later).
            t = min(v for v in down_until.values() if v >= t) + 0.01
            up = [n for n in nodes if down_until.get(n, -1.0) < t]
        node = rng.choice(up)
        down = round(rng.uniform(*shape.down_s), 3)
        faults += [Fault(round(t, 3), Action.KILL, (node,)),
                   Fault(round(t + down, 3), Action.RESTART, (node,))]
        down_until[node] = round(t + down, 3)
    pairs = [tuple(sorted(p)) for p in itertools.combinations(nodes, 2)]
    cut_until: dict[tuple[str, ...], float] = {}
    for t in _times(rng, partitions, shape.warmup_s, window):
        free = [p for p in pairs if cut_until.get(p, -1.0) < t]
        if not free:
            t = min(v for v in cut_until.values() if v >= t) + 0.01
            free = [p for p in pairs if cut_until.get(p, -1.0) < t]
        chosen = rng.choice(free)
        lasts = round(rng.uniform(*shape.cut_s), 3)
        faults += [Fault(round(t, 3), Action.CUT, chosen),
                   Fault(round(t + lasts, 3), Action.HEAL, chosen)]
        cut_until[chosen] = round(t + lasts, 3)
    order = {Action.RESTART: 0, Action.HEAL: 1, Action.KILL: 2, Action.CUT: 3}
    faults.sort(key=lambda f: (f.at_s, order[f.action], f.target))
    return FaultPlan(seed, duration_s, tuple(faults))


def _times(rng: random.Random, count: int, start: float, window: float) -> list[float]:
    """One time per equal slot of the window, at a random point of the slot: random
    intervals, but never all bunched at one end of a long run."""
    if count == 0:
        return []
    slot = window / count
    return [start + i * slot + rng.uniform(0.0, slot) for i in range(count)]
