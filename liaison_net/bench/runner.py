"""One bench run: which scenarios, in which order, against which brokers.

Order: the ceiling first (a quiet machine), then our two nodes through light, relay,
paced, outage and crash (each measured for CPU, memory and disk around it), then the
memory scenario, then each baseline broker pair through the same five scenarios with the
very same envelope bytes. Only one system runs at a time, so no broker competes with
another for this machine's cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from liaison_net import timeline
from liaison_net.bench import baselines, ceiling, cost
from liaison_net.bench.report import OURS, Results, machine_facts
from liaison_net.bench.scenarios import (
    FULL,
    QUICK,
    SCENARIOS,
    Figures,
    OurSystem,
    Plan,
    System,
    Ui,
    memory,
)
from liaison_net.bench.workload import Batch, describe, rounded, seal_batch
from liaison_net.drills.harness import avoid_ephemeral_ports
from liaison_net.heap import settle_heap

CORE = ("light", "relay", "paced", "outage", "crash")
ALL = (*CORE, "baselines", "ceiling", "memory")
WORKER_SCENARIOS = ("relay", "relay_batched", "relay_stream", "paced")
#: Ours only, run after ``relay``; a baseline shows its relay figures in their rows.
OURS_ONLY = ("relay_batched", "relay_stream")


def selection(names: Sequence[str]) -> list[str]:
    """The scenarios to run, in canonical order; ``baselines`` alone means all of 1-4."""
    chosen = {n.strip() for name in names for n in name.split(",") if n.strip()} or set(ALL)
    unknown = chosen - set(ALL)
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(ALL)}")
    if "baselines" in chosen and not chosen & set(CORE):
        chosen |= set(CORE)
    return [n for n in ALL if n in chosen]


async def _sender_counts(system: System) -> dict[str, float] | None:
    try:
        return await system.sender_counts()
    except (OSError, aiohttp.ClientError, TimeoutError):
        return None  # a node down at that moment (outage, crash): no figure


def _transactions(before: dict[str, float] | None,
                  after: dict[str, float] | None) -> Figures:
    """The origin's federation transactions during the scenario: how many, envelopes per
    transaction, and the share of envelopes handed over at their commit (not read); and
    (``back_``) the destination's to the origin (its evidence)."""
    if before is None or after is None or not after:
        return {}

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    out: Figures = {}
    for prefix in ("", "back_"):
        counts = [delta(f"{prefix}{k}") for k in ("handed_count", "read_count",
                                                   "handed_sum", "read_sum")]
        if any(c < 0 for c in counts):
            continue  # that node restarted during the scenario (outage, crash): its
            # counters began again, so no figure rather than a negative one
        txns = delta(f"{prefix}handed_count") + delta(f"{prefix}read_count")
        envelopes = delta(f"{prefix}handed_sum") + delta(f"{prefix}read_sum")
        out[f"{prefix}transactions"] = int(txns)
        out[f"{prefix}envelopes_per_transaction"] = rounded(envelopes / txns if txns else None,
                                                            1)
        out[f"{prefix}handed_share"] = rounded(
            delta(f"{prefix}handed_sum") / envelopes if envelopes else None, 2)
    return out


async def measured(name: str, system: System, batch: Batch, ui: Ui) -> Figures:
    """One scenario, with each broker's CPU, peak RSS and disk growth around it (``cost``).

    The load generator's heap is settled first (``heap.settle_heap``, as a node's): its
    sealed batches and imports frozen, young collections rarer, so a full collection of the
    bench's own (20-71 ms with 20,000 envelopes built) does not land in any broker's
    latency figures."""
    settle_heap()
    probes = system.probes()
    before = {role: await asyncio.to_thread(cost.snapshot, probe)
              for role, probe in probes.items()}
    sent_before = await _sender_counts(system)
    sinks = len(system.sink_cpu)
    start = cost.window(0.0)
    figures: Figures = await SCENARIOS[name](system, batch, ui)
    figures.update(_transactions(sent_before, await _sender_counts(system)))
    end = cost.window(_summed(system.sink_cpu[sinks:]))
    envelopes = int(figures.get("accepted", 0))
    # Asked again: a destination restarted by the scenario runs under a new PID.
    figures.update(await asyncio.to_thread(
        cost.figures, before, system.probes(), envelopes=envelopes,
        envelope_bytes=batch.average_bytes()))
    # The rest of the machine over the same window: the bench, its sink, every core.
    figures.update(cost.whole(start, end, [figures.get(f"{role}_cpu_us_per_envelope")
                                           for role in cost.ROLES], envelopes=envelopes))
    return figures


def _summed(values: list[float | None]) -> float | None:
    """The sinks' CPU seconds together; None if one is unknown (or none ran)."""
    return None if not values or any(v is None for v in values) \
        else sum(v for v in values if v is not None)


@dataclass
class Run:
    selected: list[str]
    plan: Plan
    workdir: Path
    ui: Ui
    log_level: str = "info"
    #: Where our nodes keep their data, each a run of the core scenarios of its own
    #: ("sqlite" first: the baselines get its envelope bytes).
    stores: tuple[str, ...] = ("sqlite",)
    #: Worker counts of the PostgreSQL origin (issue 17): each a run of its own of the
    #: relay and paced scenarios (all the core ones with one worker).
    workers: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        self.results: Results = {}
        self.errors: list[str] = []

    def _error(self, scenario: str, system: str, exc: BaseException) -> None:
        text = describe(exc)
        self.results.setdefault(scenario, {})[system] = {"error": text}
        self.errors.append(f"{scenario}/{system}: {text}")
        with (self.workdir / "errors.log").open("a", encoding="utf-8") as log:
            log.write(f"--- {scenario} / {system}\n")
            log.write("".join(traceback.format_exception(exc)))
        self.ui.note(f"[red]{scenario} / {system} failed: {text}[/red]")

    @property
    def core(self) -> list[str]:
        """The selected core scenarios; ``relay`` brings ``relay_batched`` (our batch
        submit, unless ``batch_size`` is 1) and ``relay_stream`` (our submit stream)
        after it."""
        out = [n for n in CORE if n in self.selected]
        if "relay" in out:
            extra = ["relay_batched"] if self.plan.batch_size > 1 else []
            out[out.index("relay") + 1:out.index("relay") + 1] = [*extra, "relay_stream"]
        return out

    def counts(self) -> dict[str, int]:
        p = self.plan
        return {"light": p.light, "relay": p.relay, "relay_batched": p.relay,
                "relay_stream": p.relay, "paced": p.paced,
                "outage": p.outage, "crash": p.crash}

    async def run(self) -> Results:
        timeline.start("bench")  # off unless LIAISON_TIMELINE is set (measuring)
        # SIGTERM (and SIGINT, which asyncio.run already handles) cancel the run, so that
        # every `finally` stops the processes the bench started before it exits.
        task = asyncio.current_task()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        if "ceiling" in self.selected:
            self.ui.note("ceiling: crypto and disk rates on one core")
            try:
                figures = await asyncio.to_thread(ceiling.measure, self.workdir / "ceiling",
                                                  seconds=0.25 if self.plan.quick else 1.0)
                self.results.setdefault("ceiling", {})["machine"] = figures
            except Exception as exc:
                self._error("ceiling", "machine", exc)
        batches: dict[str, Batch] = {}
        if self.core:
            for store in self.stores:
                for workers in self.workers if store == "postgresql" else (1,):
                    sealed = await self._ours(store, workers)
                    batches = batches or sealed
        if "memory" in self.selected:
            try:
                self.results.setdefault("memory", {})[OURS] = await memory(
                    self.workdir, self.plan, self.ui, log_level=self.log_level)
            except Exception as exc:
                self._error("memory", OURS, exc)
        if "baselines" in self.selected and batches:
            for system in baselines.systems(self.workdir, self.plan):
                await self._baseline(system, batches)
        return self.results

    async def _ours(self, store: str = "sqlite", workers: int = 1) -> dict[str, Batch]:
        system = OurSystem(self.workdir, self.plan, log_level=self.log_level, store=store,
                           workers=workers)
        ours = system.name
        # Several workers scale the throughput: relay and paced measure it (light, outage
        # and crash are about one node's latency and the destination, run once).
        core = self.core if workers == 1 else [n for n in self.core if n in WORKER_SCENARIOS]
        batches: dict[str, Batch] = {}
        try:
            await system.open(self.ui)
            for name in core:
                n = self.counts()[name]
                with self.ui.step(f"sealing and signing {n} envelopes for {name}",
                                  n) as progress:
                    batches[name] = await asyncio.to_thread(
                        seal_batch, system.sender_key, system.recipient_public, n,
                        payload_bytes=self.plan.payload_bytes, progress=progress)
            for name in core:
                try:
                    self.results.setdefault(name, {})[ours] = await measured(
                        name, system, batches[name], self.ui)
                except Exception as exc:
                    self._error(name, ours, exc)
        except Exception as exc:
            for name in core:
                if ours not in self.results.get(name, {}):
                    self._error(name, ours, exc)
        finally:
            await system.close()
        return batches

    async def _baseline(self, system: System, batches: dict[str, Batch]) -> None:
        reason = await asyncio.to_thread(baselines.availability, system, quick=self.plan.quick,
                                         ui=self.ui)
        if reason is not None:
            for name in self.core:
                self.results.setdefault(name, {})[system.name] = {"unavailable": reason}
            self.ui.note(f"{system.label}: unavailable: {reason}")
            return
        try:
            await system.open(self.ui)
            for name in self.core:
                if name in OURS_ONLY:
                    # No batch submit nor submit stream: their relay client (publishes
                    # pipelined) is their best, so these rows are compared with it
                    # (report.notes says so).
                    relay = self.results.get("relay", {}).get(system.name)
                    if relay is not None:
                        self.results.setdefault(name, {})[system.name] = {
                            **relay, "same_as": "relay"}
                    continue
                try:
                    self.results.setdefault(name, {})[system.name] = await measured(
                        name, system, batches[name], self.ui)
                except Exception as exc:
                    self._error(name, system.name, exc)
        except Exception as exc:
            for name in self.core:
                if system.name not in self.results.get(name, {}):
                    self._error(name, system.name, exc)
        finally:
            await system.close()


def bench(names: Sequence[str], *, quick: bool, ui: Ui, workdir: Path | None = None,
          keep: bool = False, log_level: str = "info",
          batch_size: int = 32, light_seconds: float | None = None,
          stores: Sequence[str] = ("sqlite",),
          workers: Sequence[int] = (1,),
          verify_workers: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """Run the selection; return (JSON document, errors). Cleans up unless ``keep``.
    ``batch_size``: envelopes per request in our batched relay (1: none);
    ``light_seconds``: the light load's length, if not the plan's; ``verify_workers``:
    ``[workers] verify`` of our nodes (None: the node's default)."""
    from liaison_net.bench.report import document

    selected = selection(names)
    # Our PostgreSQL nodes connect out before they listen: no ports the kernel hands out.
    avoid_ephemeral_ports()
    started = datetime.now(UTC)
    machine = machine_facts()
    root = workdir or Path(tempfile.mkdtemp(prefix="liaison-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    plan = dataclasses.replace(QUICK if quick else FULL, batch_size=batch_size,
                               verify_workers=verify_workers)
    if light_seconds is not None:
        plan = dataclasses.replace(plan, light_seconds=light_seconds)
    run = Run(selected, plan, root, ui, log_level, tuple(stores), tuple(workers))
    try:
        results = asyncio.run(run.run())
    finally:
        if keep:
            ui.note(f"kept the bench directory {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    plan = run.plan
    extra = {"plan": {"light_rate_per_s": plan.light_rate,
                      "light_seconds": plan.light_seconds, "relay": plan.relay,
                      "paced_rate_per_s": plan.paced_rate,
                      "paced_seconds": plan.paced_seconds, "outage": plan.outage,
                      "crash": plan.crash, "memory": plan.memory,
                      "payload_bytes": plan.payload_bytes, "concurrency": plan.concurrency,
                      "client_sessions": plan.sessions, "stall_s": plan.stall_s,
                      "batch_size": plan.batch_size,
                      "verify_workers": ("default" if plan.verify_workers is None
                                         else plan.verify_workers)},
             "baselines": baselines.describe_setup(),
             "node_log_level": log_level, "stores": list(stores),
             "workers": list(workers)}
    return document(results, machine=machine, quick=quick, selected=selected,
                    started=started, extra=extra), run.errors
