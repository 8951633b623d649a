"""The scenarios, written once against ``System`` so every broker is driven and counted alike.

light   a light load, 20/s for 30 s (what an officer feels on an ordinary day): latency
        submit -> destination inbox p50/p95/p99/max, counted from when each envelope was
        due, and submit -> accepted at the origin (the officer's "sent").
relay   envelopes offered as fast as the origin takes them (``concurrency`` in flight),
        measured until every accepted one is in the destination inbox: envelopes/s from
        the first offer to the last arrival, and latency offer -> arrival p50/p99.
        ``relay_batched`` (ours, run beside ``relay``): the same through the batch submit,
        ``batch_size`` per request, one request in flight per session. ``relay_stream``
        (ours, likewise): one envelope per frame on the submit stream, ``concurrency`` in
        flight over one websocket per session, each awaiting its own answer (what the
        baselines' publisher confirms are).
paced   a fixed rate for a fixed time; latency is counted from when each envelope was
        *due*, so a slow answer cannot hide the ones queued behind it.
outage  the destination is stopped (orderly), the envelopes queue at the origin, then it
        returns: catch-up rate (first to last arrival), lost and duplicated counts.
crash   the destination is killed with SIGKILL twice mid-stream (at a third and two thirds
        of the stream) and restarted at once: lost and duplicated counts.
memory  (our node only) peak RSS of an origin holding the whole batch queued for a peer
        that never answers.

"Lost" is an envelope the origin acknowledged (accepted, PUBACK, publisher confirm) that
never reached the destination within the stall limit; "duplicated" an extra arrival of
one that did. For our node both come from the destination's SQLite inbox itself.

Around every scenario the runner reads each broker process's CPU time, peak RSS and bytes
on disk (``cost``), through ``System.probes``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from liaison_net import timeline
from liaison_net.bench import cost
from liaison_net.bench.cost import Probe
from liaison_net.bench.network import BenchNetwork, Deadline, OfficerSpec
from liaison_net.bench.sinks import SinkSpec
from liaison_net.bench.workload import (
    RECIPIENT,
    SENDER,
    Batch,
    Progress,
    Sink,
    Submit,
    SubmitMany,
    Submitted,
    first_arrivals,
    latencies_ms,
    percentile,
    rounded,
    seal_batch,
    submit_paced,
    submit_stream,
    wait_arrivals,
)
from liaison_net.client.session import NodeSession, SubmitResult, officer_ssl_context
from liaison_net.core import crypto
from liaison_net.core.ids import id_from_text
from liaison_net.drills.harness import HarnessTimeout
from liaison_net.drills.pg_cluster import Cluster, make_cluster
from liaison_net.pki.certificates import node_hostname
from liaison_net.store import observe

Figures = dict[str, Any]
LIVE_MAX = 100_000  # arrivals the live-stream watcher keeps


@dataclass(frozen=True)
class Plan:
    """Counts and bounds of one bench run."""

    quick: bool
    relay: int
    paced_rate: int
    paced_seconds: float
    outage: int
    crash: int
    memory: int
    payload_bytes: int = 1024
    concurrency: int = 32
    sessions: int = 8
    stall_s: float = 30.0
    scenario_timeout_s: float = 900.0
    # Envelopes per batch submit in ``relay_batched`` (ours only: the baselines have no
    # batch submit); 1 runs no batched relay.
    batch_size: int = 32
    light_rate: int = 20
    light_seconds: float = 30.0
    # ``[workers] verify`` of both our nodes (None: the node's default, which is 0; 0:
    # verify in the node's process); the worker processes' CPU and RSS count in their
    # node's figures.
    verify_workers: int | None = None

    @property
    def paced(self) -> int:
        return int(self.paced_rate * self.paced_seconds)

    @property
    def light(self) -> int:
        return int(self.light_rate * self.light_seconds)


FULL = Plan(quick=False, relay=20_000, paced_rate=1000, paced_seconds=10.0, outage=10_000,
            crash=10_000, memory=100_000)
QUICK = Plan(quick=True, relay=500, paced_rate=200, paced_seconds=2.0, outage=300, crash=500,
             memory=2_000, stall_s=5.0, scenario_timeout_s=120.0, light_seconds=3.0)


class Ui(abc.ABC):
    """How scenarios report progress (``report.ConsoleUi`` draws it)."""

    @abc.abstractmethod
    def step(self, label: str, total: int | None) -> contextlib.AbstractContextManager[Progress]:
        """A unit of long work; the yielded callable takes the count done so far."""

    @abc.abstractmethod
    def note(self, text: str) -> None:
        """One line of information."""


class System(abc.ABC):
    """A pair of brokers, origin -> destination, as the scenarios see it."""

    name: str
    label: str

    def __init__(self, workdir: Path, plan: Plan) -> None:
        self.workdir = workdir
        self.plan = plan
        #: The CPU seconds of each sink process this system's scenarios ran, once stopped
        #: (None: unknown), for the machine's budget (``cost.whole``).
        self.sink_cpu: list[float | None] = []

    @abc.abstractmethod
    async def open(self, ui: Ui) -> None:
        """Install if needed, start both brokers, connect the submitting clients."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect and stop every process this system started (safe to call twice)."""

    @abc.abstractmethod
    async def submit(self, key: bytes, raw: bytes) -> None:
        """Hand one envelope to the origin; return once the origin acknowledged it."""

    # Several envelopes in one request, for systems that have a batch submit (ours).
    submit_many: SubmitMany | None = None

    @contextlib.asynccontextmanager
    async def streamed(self) -> AsyncIterator[Submit | None]:
        """A submit over the system's submit streams (ours: one websocket per client
        session), open while the block runs; None where the system has none."""
        yield None

    @abc.abstractmethod
    def sink_spec(self, keys_file: Path, out_file: Path) -> SinkSpec:
        """Where and how the sink watches the destination."""

    @abc.abstractmethod
    async def stop_destination(self, *, kill: bool) -> None:
        """SIGKILL (kill) or stop in order the destination broker."""

    @abc.abstractmethod
    async def start_destination(self, *, wait: bool) -> None:
        """Start the destination again; with ``wait``, return once it takes connections."""

    @abc.abstractmethod
    async def wait_destination(self) -> None:
        """Return once the destination takes connections."""

    def probes(self) -> dict[str, Probe]:
        """The origin's and the destination's process and state on disk, for ``cost``."""
        return {}

    @contextlib.asynccontextmanager
    async def live(self) -> AsyncIterator[dict[bytes, int] | None]:
        """Arrivals (key -> ``time.time_ns``) as the recipient's own client sees them
        while the block runs, where the system has such a client (ours: the officer's
        live inbox stream); None elsewhere."""
        yield None

    async def sender_counts(self) -> dict[str, float]:
        """The origin's federation transactions so far, where the system reports them
        (ours: ``liaison_transaction_envelopes`` count and sum by source); {} elsewhere."""
        return {}

    def counts(self, keys: set[bytes], records: list[tuple[bytes, int]]) -> tuple[int, int]:
        """(distinct keys received, extra copies received), from the sink by default."""
        copies = Counter(key for key, _ in records if key in keys)
        return len(copies), sum(copies.values()) - len(copies)


# --- the scenarios ------------------------------------------------------------------------


@contextlib.contextmanager
def _sink(system: System, batch: Batch, scenario: str) -> Iterator[Sink]:
    runs = system.workdir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    keys_file = batch.write_keys(runs / f"{system.name}-{scenario}.keys")
    sink = Sink(system.sink_spec(keys_file, runs / f"{system.name}-{scenario}.arrivals"))
    try:
        yield sink
    finally:
        sink.stop()
        system.sink_cpu.append(sink.cpu_s)


async def _finish(system: System, sink: Sink, batch: Batch, sent: Submitted, ui: Ui,
                  label: str) -> tuple[Figures, dict[bytes, int]]:
    """Wait for the accepted envelopes to arrive, then count lost and duplicated."""
    accepted = sent.accepted_keys(batch)
    plan = system.plan
    with ui.step(f"{label}: waiting for the destination", len(accepted)) as progress:
        await wait_arrivals(sink, len(accepted), stall_s=plan.stall_s,
                            deadline_s=plan.scenario_timeout_s, progress=progress)
    records = await asyncio.to_thread(sink.stop)
    received, duplicated = system.counts(accepted, records)
    first = {k: t for k, t in first_arrivals(records).items() if k in accepted}
    figures: Figures = {
        "sent": len(batch), "accepted": len(accepted), "not_accepted": len(sent.failed),
        "received": received, "lost": len(accepted) - received, "duplicated": duplicated,
    }
    if sent.failed:
        figures["not_accepted_example"] = next(iter(sent.failed.values()))
    return figures, first


def _latency(figures: Figures, batch: Batch, sent: Submitted, first: dict[bytes, int]) -> None:
    lat = latencies_ms(batch, sent, first)
    figures["latency_p50_ms"] = rounded(percentile(lat, 50), 2)
    figures["latency_p95_ms"] = rounded(percentile(lat, 95), 2)
    figures["latency_p99_ms"] = rounded(percentile(lat, 99), 2)
    figures["latency_max_ms"] = rounded(max(lat) if lat else None, 2)


async def light(system: System, batch: Batch, ui: Ui) -> Figures:
    """Paced at ``plan.light_rate``: far below capacity, so latency is the path's own."""
    plan = system.plan
    label = f"{system.label} light"
    idle = await _idle_cpu(system, 1.0 if plan.quick else 3.0)
    with _sink(system, batch, "light") as sink:
        await asyncio.to_thread(sink.start, 60)
        async with system.live() as live:
            with ui.step(f"{label}: {plan.light_rate}/s for {plan.light_seconds:g} s",
                         len(batch)) as progress:
                sent = await submit_paced(system.submit, batch, rate=plan.light_rate,
                                          max_in_flight=64, on_accepted=progress)
            figures, first = await _finish(system, sink, batch, sent, ui, label)
            if live is not None:  # the stream is a few ms behind the sink at most
                expected = sent.accepted_keys(batch)
                with contextlib.suppress(HarnessTimeout):  # then figures of what it showed
                    await asyncio.to_thread(Deadline(plan.stall_s).wait_for,
                                            lambda: expected <= live.keys(),
                                            what="the live stream to show every envelope")
    figures["rate_target_per_s"] = plan.light_rate
    _latency(figures, batch, sent, first)
    if live is not None:
        at_stream = latencies_ms(batch, sent, dict(live))
        figures["live_latency_p50_ms"] = rounded(percentile(at_stream, 50), 2)
        figures["live_latency_p99_ms"] = rounded(percentile(at_stream, 99), 2)
    accepted = [max(0.0, (at - sent.start_ns[i]) / 1e6) for i, at in sent.accepted_ns.items()]
    figures["accept_p50_ms"] = rounded(percentile(accepted, 50), 2)
    figures["accept_p99_ms"] = rounded(percentile(accepted, 99), 2)
    figures.update(idle)
    return figures


def _cpu_now(probes: dict[str, Probe]) -> dict[str, float | None]:
    """CPU seconds so far of each role's process (or group); None for one that is down."""
    return {role: cost.cpu_seconds(p.pid, group=p.group) if p.pid is not None else None
            for role, p in probes.items()}


async def _idle_cpu(system: System, seconds: float) -> Figures:
    """CPU ms per second each broker spends with nothing to do (its background loops): the
    part of a light load's CPU per envelope that is not the envelopes' own."""
    probes = system.probes()
    before = _cpu_now(probes)
    await asyncio.sleep(seconds)
    after = _cpu_now(probes)
    out: Figures = {}
    for role in probes:
        start, end = before[role], after[role]
        out[f"{role}_idle_cpu_ms_per_s"] = rounded(
            max(0.0, end - start) * 1e3 / seconds
            if start is not None and end is not None else None, 1)
    return out


async def relay(system: System, batch: Batch, ui: Ui) -> Figures:
    """One envelope per request, ``concurrency`` (32) in flight: the baselines' client
    shape (32 publishes in flight, each awaiting its PUBACK or publisher confirm)."""
    return await _relay(system, batch, ui, label=f"{system.label} relay", scenario="relay",
                        concurrency=system.plan.concurrency, batch_size=1)


async def relay_batched(system: System, batch: Batch, ui: Ui) -> Figures:
    """What a client of our library sending many gets (``NodeSession.submit_many``):
    ``batch_size`` envelopes per request, one request in flight per session."""
    plan = system.plan
    figures = await _relay(system, batch, ui, label=f"{system.label} relay, batched",
                           scenario="relay_batched", concurrency=plan.sessions,
                           batch_size=plan.batch_size)
    figures["batch_size"] = plan.batch_size
    return figures


async def relay_stream(system: System, batch: Batch, ui: Ui) -> Figures:
    """One envelope per frame on the submit stream (``NodeSession.submit_stream``, one
    websocket per session), ``concurrency`` (32) in flight, each awaiting its own answer:
    the baselines' client shape on our node's own stream."""
    async with system.streamed() as submit:
        if submit is None:
            raise RuntimeError(f"{system.label} has no submit stream")
        figures = await _relay(system, batch, ui, label=f"{system.label} relay, stream",
                               scenario="relay_stream", concurrency=system.plan.concurrency,
                               batch_size=1, submit=submit)
    figures["streams"] = system.plan.sessions
    return figures


async def _relay(system: System, batch: Batch, ui: Ui, *, label: str, scenario: str,
                 concurrency: int, batch_size: int, submit: Submit | None = None) -> Figures:
    with _sink(system, batch, scenario) as sink:
        await asyncio.to_thread(sink.start, 60)
        with ui.step(f"{label}: submitting {len(batch)}", len(batch)) as progress:
            sent = await submit_stream(submit or system.submit, batch, concurrency=concurrency,
                                       on_accepted=progress, batch_size=batch_size,
                                       submit_many=system.submit_many)
        figures, first = await _finish(system, sink, batch, sent, ui, label)
    start = min(sent.start_ns.values())
    if first:
        span = (max(first.values()) - start) / 1e9
        figures["relay_per_s"] = rounded(len(first) / span if span > 0 else None, 0)
    figures["accept_per_s"] = rounded(sent.accept_rate(), 0)
    _latency(figures, batch, sent, first)
    figures["concurrency"] = concurrency
    return figures


async def paced(system: System, batch: Batch, ui: Ui) -> Figures:
    plan = system.plan
    label = f"{system.label} paced"
    with _sink(system, batch, "paced") as sink:
        await asyncio.to_thread(sink.start, 60)
        with ui.step(f"{label}: {plan.paced_rate}/s for {plan.paced_seconds:g} s",
                     len(batch)) as progress:
            sent = await submit_paced(system.submit, batch, rate=plan.paced_rate,
                                      max_in_flight=512, on_accepted=progress)
        figures, first = await _finish(system, sink, batch, sent, ui, label)
    figures["rate_target_per_s"] = plan.paced_rate
    if first:
        span = (max(first.values()) - min(sent.start_ns.values())) / 1e9
        figures["delivered_per_s"] = rounded(len(first) / span if span > 0 else None, 0)
    _latency(figures, batch, sent, first)
    return figures


async def outage(system: System, batch: Batch, ui: Ui) -> Figures:
    label = f"{system.label} outage"
    with _sink(system, batch, "outage") as sink:
        await asyncio.to_thread(sink.start, 60)
        await system.stop_destination(kill=False)
        with ui.step(f"{label}: destination down, queueing {len(batch)}",
                     len(batch)) as progress:
            sent = await submit_stream(system.submit, batch,
                                       concurrency=system.plan.concurrency,
                                       on_accepted=progress)
        await system.start_destination(wait=True)
        back = time.time_ns()
        probes = system.probes()
        at_back = _cpu_now(probes)
        whole_back = cost.window(sink.cpu_now())
        ui.note(f"{label}: destination back, catching up")
        figures, first = await _finish(system, sink, batch, sent, ui, label)
        at_end = _cpu_now(probes)
        whole_end = cost.window(sink.cpu_now())
    figures["accept_per_s_while_down"] = rounded(sent.accept_rate(), 0)
    # The catch-up's own CPU per envelope at each node, from the destination's return (it
    # restarted, so the scenario-long figures have none for it) to the last arrival.
    for role, start in at_back.items():
        end = at_end.get(role)
        figures[f"catch_up_{role}_cpu_us_per_envelope"] = rounded(
            max(0.0, end - start) * 1e6 / len(first)
            if start is not None and end is not None and first else None, 0)
    # And the whole machine's over the catch-up: the bench, the sink, every core.
    figures.update(cost.whole(
        whole_back, whole_end, [figures[f"catch_up_{role}_cpu_us_per_envelope"]
                                for role in at_back],
        envelopes=len(first), prefix="catch_up_"))
    if first:
        t_first, t_last = min(first.values()), max(first.values())
        figures["catch_up_per_s"] = rounded(catch_up_rate(list(first.values()), back), 0)
        figures["reconnect_s"] = rounded(max(0, t_first - back) / 1e9, 2)
        figures["drain_s"] = rounded(max(0, t_last - back) / 1e9, 2)
    return figures


def catch_up_rate(arrivals: list[int], back_ns: int) -> float | None:
    """Envelopes per second from the first arrival to the last. When they all arrive at
    one instant (a small backlog carried in one or two transactions, read by the sink at
    once) that span is zero: then from the destination's return to the last arrival,
    which counts the reconnection too (a lower bound), rather than no figure."""
    if not arrivals:
        return None
    t_first, t_last = min(arrivals), max(arrivals)
    span = (t_last - t_first) / 1e9
    if span <= 0:
        span = (t_last - back_ns) / 1e9
    return len(arrivals) / span if span > 0 else None


async def crash(system: System, batch: Batch, ui: Ui) -> Figures:
    label = f"{system.label} crash"
    kill_at = [len(batch) // 3, 2 * len(batch) // 3]
    kills: list[int] = []
    sent = Submitted()

    async def chaos() -> None:
        for at in kill_at:
            while len(sent.accepted_ns) < at:
                await asyncio.sleep(0.005)
            await system.stop_destination(kill=True)
            kills.append(time.time_ns())
            ui.note(f"{label}: destination killed (SIGKILL) after {at} accepted; restarting")
            await system.start_destination(wait=False)

    with _sink(system, batch, "crash") as sink:
        await asyncio.to_thread(sink.start, 60)
        with ui.step(f"{label}: streaming {len(batch)}", len(batch)) as progress:
            chaos_task = asyncio.create_task(chaos())
            await submit_stream(system.submit, batch, concurrency=system.plan.concurrency,
                                on_accepted=progress, out=sent)
            try:
                async with asyncio.timeout(120):
                    await chaos_task
            finally:
                chaos_task.cancel()
        await system.wait_destination()
        figures, first = await _finish(system, sink, batch, sent, ui, label)
    figures["kills"] = len(kills)
    if first and kills:
        figures["recovery_s"] = rounded(max(0, max(first.values()) - kills[-1]) / 1e9, 2)
    return figures


# --- our broker ---------------------------------------------------------------------------


#: Our two nodes on PostgreSQL, as a system of the results (`--store postgresql`).
OURS_PG = "liaison_net_pg"


class OurSystem(System):
    """Two real `liaison node serve` processes, NL (origin) and BE (destination), over
    mutual TLS, with one sending officer at NL using ``plan.sessions`` client sessions."""

    name = "liaison_net"
    label = "liaison_net"

    def __init__(self, workdir: Path, plan: Plan, *, log_level: str = "info",
                 store: str = "sqlite", workers: int = 1) -> None:
        super().__init__(workdir, plan)
        self.store = store
        #: `node serve` processes of the origin NL on its one database (BE runs one):
        #: the client sessions are spread over them, their CPU is summed.
        self.workers = workers
        if store == "postgresql":  # both nodes on one throwaway cluster, a database each
            self.name, self.label = OURS_PG, "liaison_net (PostgreSQL)"
        if workers > 1:
            engine = "PostgreSQL" if store == "postgresql" else "SQLite"
            self.name = f"{self.name}_w{workers}"
            self.label = f"liaison_net ({engine}, {workers} workers)"
        base = "liaison" if store == "sqlite" else "liaison_pg"
        self.net = BenchNetwork(workdir / (base if workers == 1 else f"{base}_w{workers}"),
                                node_ids=("nl", "be"), log_level=log_level,
                                verify_workers=plan.verify_workers)
        self.origin_workers = ["nl"]
        self.cluster: Cluster | None = None
        self.sessions: list[NodeSession] = []
        self._stack = contextlib.AsyncExitStack()
        self._next = 0
        self.submit_many = self._submit_many

    @property
    def sender_key(self) -> crypto.SigningKeyPair:
        return self.net.officers[SENDER].keystore.signing

    @property
    def recipient_public(self) -> bytes:
        return self.net.officers[RECIPIENT].keystore.encryption.public

    async def open(self, ui: Ui) -> None:
        deadline = Deadline(120)
        ui.note(f"{self.label}: PKI, two nodes (nl -> be), two officers")
        if self.store == "postgresql":
            await asyncio.to_thread(self._start_postgresql)
        await asyncio.to_thread(self.net.create)
        await asyncio.to_thread(self.net.enrol, (OfficerSpec(SENDER, "Bench Sender"),
                                                 OfficerSpec(RECIPIENT, "Bench Desk")), deadline)
        for nid in ("be", "nl"):
            self.net.start_node(nid)
        for nid in ("be", "nl"):
            await asyncio.to_thread(self.net.wait_node, nid, deadline)
        # The other workers once the first has migrated the database.
        self.origin_workers += [self.net.add_worker("nl", n) for n in range(2, self.workers + 1)]
        for key in self.origin_workers[1:]:
            self.net.start_node(key)
        for key in self.origin_workers[1:]:
            await asyncio.to_thread(self.net.wait_node, key, deadline)
        # Each node must know the other's officer before the first envelope: BE verifies
        # the sender's signature, NL checks that the recipient is in its directory.
        await asyncio.to_thread(deadline.wait_for, lambda: self.net.has_card("be", SENDER),
                                what="the sender's card to reach be")
        await asyncio.to_thread(deadline.wait_for, lambda: self.net.has_card("nl", RECIPIENT),
                                what="the recipient's card to reach nl")
        keystore = self.net.officers[SENDER].keystore
        for i in range(self.plan.sessions):  # spread over the origin's workers
            worker = self.net.nodes[self.origin_workers[i % len(self.origin_workers)]]
            session = await self._stack.enter_async_context(NodeSession(
                dataclasses.replace(keystore, node_url=worker.client_url)))
            await session.login()
            self.sessions.append(session)

    def _start_postgresql(self) -> None:
        self.cluster = make_cluster(self.workdir)
        for nid in ("nl", "be"):
            self.net.pg_stores[nid] = observe.PgDatabase(
                self.cluster.create_database(f"bench_{nid}"), self.cluster.password_file)

    async def close(self) -> None:
        await self._stack.aclose()
        self.sessions.clear()
        await asyncio.to_thread(self.net.stop_all)
        if self.cluster is not None:  # after the nodes: stopped by its PID
            await asyncio.to_thread(self.cluster.destroy)
            self.cluster = None

    async def submit(self, key: bytes, raw: bytes) -> None:
        self._next = (self._next + 1) % len(self.sessions)
        await self.sessions[self._next].submit(raw)

    @contextlib.asynccontextmanager
    async def streamed(self) -> AsyncIterator[Submit | None]:
        async with contextlib.AsyncExitStack() as stack:
            streams = [await stack.enter_async_context(session.submit_stream())
                       for session in self.sessions]
            turn = 0

            async def submit(_key: bytes, raw: bytes) -> None:
                nonlocal turn
                turn = (turn + 1) % len(streams)
                await streams[turn].submit(raw)

            yield submit

    async def _submit_many(self, raws: list[bytes]) -> list[str | None]:
        self._next = (self._next + 1) % len(self.sessions)
        return [None if isinstance(r, SubmitResult) else str(r)[:200]
                for r in await self.sessions[self._next].submit_many(raws)]

    def sink_spec(self, keys_file: Path, out_file: Path) -> SinkSpec:
        where = self.net.store("be")
        if isinstance(where, observe.PgDatabase):
            return SinkSpec("postgresql", str(keys_file), str(out_file), database=where.dsn,
                            officer=RECIPIENT, password_file=str(where.password_file))
        return SinkSpec("sqlite", str(keys_file), str(out_file),
                        database=str(where), officer=RECIPIENT)

    @contextlib.asynccontextmanager
    async def live(self) -> AsyncIterator[dict[bytes, int] | None]:
        """The recipient logged in at BE, following its live inbox stream (in this
        process: at a light load it is idle between submits)."""
        arrivals: dict[bytes, int] = {}
        async with NodeSession(self.net.officers[RECIPIENT].keystore) as session:
            after = max((e.seq for e in await session.inbox_all()), default=0)

            async def follow() -> None:
                async with contextlib.aclosing(session.follow(after)) as entries:
                    async for entry in entries:
                        arrivals.setdefault(id_from_text(entry.id), time.time_ns())
                        timeline.mark("b.stream", id_from_text(entry.id))
                        if len(arrivals) > LIVE_MAX:
                            return  # bounded; the light load is far below it

            async with asyncio.TaskGroup() as group:
                task = group.create_task(follow())
                try:
                    yield arrivals
                finally:
                    task.cancel()

    async def sender_counts(self) -> dict[str, float]:
        """From the nodes' /metrics: the origin's transactions to BE (the envelopes) and,
        prefixed ``back_``, BE's to the origin (the evidence), their envelopes, by source
        (handed over at the commit, or read from the outbox)."""
        keystore = self.net.officers[SENDER].keystore
        out: dict[str, float] = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                ssl=officer_ssl_context(keystore.ca_cert_pem))) as http:
            for node, key, peer, prefix in (("nl", self.origin_workers[0], "be", ""),
                                            ("be", "be", "nl", "back_")):
                async with http.get(self.net.nodes[key].client_url + "/metrics",
                                    server_hostname=node_hostname(node),
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    text = await resp.text()
                for line in text.splitlines():
                    for part in ("count", "sum"):
                        name = f"liaison_transaction_envelopes_{part}{{"
                        if line.startswith(name) and f'peer="{peer}"' in line:
                            source = line.split('source="', 1)[1].split('"', 1)[0]
                            out[f"{prefix}{source}_{part}"] = float(line.rsplit(" ", 1)[1])
        return out

    async def stop_destination(self, *, kill: bool) -> None:
        await asyncio.to_thread(self.net.stop_node, "be", kill=kill)

    async def start_destination(self, *, wait: bool) -> None:
        await asyncio.to_thread(self.net.start_node, "be", Deadline(60) if wait else None)

    async def wait_destination(self) -> None:
        await asyncio.to_thread(self.net.wait_node, "be", Deadline(60))

    def probes(self) -> dict[str, Probe]:
        out = {}
        for role, nid in (("origin", "nl"), ("destination", "be")):
            workers = tuple(pid for key in self.origin_workers[1:]
                            if (pid := self.net.pid(key)) is not None) if nid == "nl" else ()
            if self.store == "postgresql":  # the server's files are not the node's
                out[role] = Probe(self.net.pid(nid), True, (), workers=workers)
                continue
            db = self.net.database(nid)
            # group: a node is the leader of its own session (the harness starts it so), and
            # its verify workers ([workers] verify) are its children in that group: their CPU
            # and RSS are the node's, or its CPU per envelope would look lower than it is.
            out[role] = Probe(self.net.pid(nid), True, (db, db.with_name(db.name + "-wal")),
                              database=db, workers=workers)
        return out

    def counts(self, keys: set[bytes], records: list[tuple[bytes, int]]) -> tuple[int, int]:
        """From BE's inbox table itself, not from what the sink happened to see."""
        ids = observe.inbox_envelope_ids(self.net.store("be"), RECIPIENT)
        copies = Counter(envelope_id for envelope_id in ids if envelope_id in keys)
        return len(copies), sum(copies.values()) - len(copies)


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


async def memory(workdir: Path, plan: Plan, ui: Ui, *, log_level: str = "info") -> Figures:
    """Peak RSS of NL holding ``plan.memory`` envelopes queued for BE, which has gone away.

    BE runs just long enough for the directories to federate (NL checks that a remote
    recipient is in its directory), then stops; NL keeps trying it throughout."""
    net = BenchNetwork(workdir / "memory", node_ids=("nl", "be"), log_level=log_level)
    deadline = Deadline(120)
    stack = contextlib.AsyncExitStack()
    try:
        ui.note("memory: two nodes; be stops once the directories have federated")
        await asyncio.to_thread(net.create)
        await asyncio.to_thread(net.enrol, (OfficerSpec(SENDER, "Bench Sender"),
                                            OfficerSpec(RECIPIENT, "Bench Desk")), deadline)
        sender = net.officers[SENDER].keystore
        with ui.step(f"memory: sealing {plan.memory} envelopes", plan.memory) as progress:
            batch = await asyncio.to_thread(
                seal_batch, sender.signing, net.officers[RECIPIENT].keystore.encryption.public,
                plan.memory, payload_bytes=plan.payload_bytes, progress=progress)
        for nid in ("be", "nl"):
            net.start_node(nid)
        for nid in ("be", "nl"):
            await asyncio.to_thread(net.wait_node, nid, deadline)
        await asyncio.to_thread(deadline.wait_for, lambda: net.has_card("nl", RECIPIENT),
                                what="the recipient's card to reach nl")
        await asyncio.to_thread(net.stop_node, "be", kill=False)
        pid = net.pid("nl")
        assert pid is not None
        await asyncio.sleep(1.0)
        idle_rss, _ = _rss_kib(pid)
        db = net.database("nl")
        probes = {"origin": Probe(pid, False, (db, db.with_name(db.name + "-wal")),
                                  database=db)}
        before = {"origin": cost.snapshot(probes["origin"])}
        sessions = [await stack.enter_async_context(NodeSession(sender))
                    for _ in range(plan.sessions)]
        turn = 0

        async def submit(_key: bytes, raw: bytes) -> None:
            nonlocal turn
            turn = (turn + 1) % len(sessions)
            await sessions[turn].submit(raw)

        samples: list[int] = []

        async def sample() -> None:
            while True:
                samples.append(_rss_kib(pid)[0])
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        try:
            with ui.step(f"memory: queueing {plan.memory} for an unreachable peer",
                         plan.memory) as progress:
                sent = await submit_stream(submit, batch, concurrency=plan.concurrency,
                                           on_accepted=progress)
            await asyncio.sleep(2.0)  # a few sender attempts against the closed port
        finally:
            sampler.cancel()
        rss, peak = _rss_kib(pid)
        queued = observe.queued_hops(net.database("nl"), "be")
        figures: Figures = {
            "sent": len(batch), "accepted": len(sent.accepted_ns),
            "not_accepted": len(sent.failed), "queued": queued,
            "accept_per_s": rounded(sent.accept_rate(), 0),
            "idle_rss_mb": round(idle_rss / 1024, 1), "rss_mb": round(rss / 1024, 1),
            "peak_rss_mb": round(max(peak, *samples) / 1024, 1),
            "database_mb": round(net.database("nl").stat().st_size / 2**20, 1)}
        figures.update(cost.figures(before, probes, envelopes=len(sent.accepted_ns),
                                    envelope_bytes=batch.average_bytes()))
        if sent.failed:
            figures["not_accepted_example"] = next(iter(sent.failed.values()))
        return figures
    finally:
        await stack.aclose()
        await asyncio.to_thread(net.stop_all)


ScenarioFn = Callable[[System, Batch, Ui], Any]
SCENARIOS: dict[str, ScenarioFn] = {"light": light, "relay": relay,
                                    "relay_batched": relay_batched,
                                    "relay_stream": relay_stream, "paced": paced,
                                    "outage": outage, "crash": crash}
