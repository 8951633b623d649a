"""The soak itself: four real nodes, officers sending on each, faults from the plan.

Phases, each bounded in time:

1. setup: PKI, configs and officers with our own admin code (``BenchNetwork``), each
   node's ``[[peers]]`` url pointing at the harness's proxy, not at the peer;
2. chaos (``duration_s``): every officer sends continuously while the plan's faults are
   replayed on time: SIGKILL and restart of a node, cut and heal of a link;
3. settle: heal every link, start every node that is down, then poll the databases until
   every outbox is empty and every owed copy has arrived (``drain_timeout_s``);
4. effects: poll the count of effects (evidence, notices, due times, receipts) until it
   has not changed for ``EFFECTS_STABLE_S`` (``effects_timeout_s`` at most);
5. check: stop the nodes in order and account from their SQLite files (``check``).

Each node's VmRSS is sampled from /proc throughout, for every process it ran as.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import json
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from liaison_net.bench.network import BENCH_DELIVERY, BenchNetwork, Deadline, OfficerSpec
from liaison_net.bench.report import machine_facts
from liaison_net.chaos import traffic
from liaison_net.chaos.check import (
    Accounting,
    NodeFacts,
    Sent,
    account,
    account_facts,
    count_effects,
    pending_hops,
    read_node,
    verify_chains,
)
from liaison_net.chaos.plan import Action, Fault, FaultPlan, Shape, make_plan
from liaison_net.chaos.proxy import ChaosProxy
from liaison_net.client.session import NodeSession
from liaison_net.core import crypto
from liaison_net.core.envelope import Envelope
from liaison_net.core.ids import node_of
from liaison_net.demo.network import DemoError
from liaison_net.drills.pg_cluster import Cluster, make_cluster
from liaison_net.store import observe
from liaison_net.store.observe import PgDatabase

NODE_IDS = ("be", "nl", "lu", "de-nw")
#: Quick retries, as in the bench (an outage ends in a second), and a transaction timeout
#: short enough that a link the proxy leaves hanging is noticed within the run; outbox
#: reads and directory pushes every 0.3 s, as the soak has always run.
CHAOS_DELIVERY = {**BENCH_DELIVERY, "directory_push_s": 0.3, "request_timeout_s": 10.0}
#: Late faults are dropped once the chaos phase overruns its duration by this much.
OVERRUN_S = 60.0
SAMPLE_S = 0.5
#: The effects are counted once their count has not changed for this long.
EFFECTS_STABLE_S = 3.0
#: Envelopes each officer remembers receiving, to forward one of them later.
FORWARDABLE = 50


@dataclass(frozen=True)
class SoakOptions:
    kills: int = 20
    partitions: int = 20
    duration_s: float = 180.0
    seed: int = 0
    rate: float = 8.0  # envelopes per second, all officers together
    officers_per_node: int = 2
    refuse_share: float = 0.1  # the share built to be refused by the origin
    request_share: float = 0.15  # of the others, the share sent as requests (due times)
    forward_share: float = 0.1  # the share that are consented forwards (receipts)
    patience_s: float = 8.0  # how long an officer retries one envelope
    payload_bytes: int = 512
    drain_timeout_s: float = 180.0
    effects_timeout_s: float = 60.0  # after the drain, how long effects may still appear
    setup_timeout_s: float = 180.0
    rss_limit_mb: float = 400.0
    log_level: str = "info"
    shape: Shape = field(default_factory=Shape)
    store: str = "sqlite"  # or "postgresql": every node on a throwaway PostgreSQL cluster


class Ui(abc.ABC):
    """How the soak tells an operator what it is doing (``report.ConsoleUi`` draws it)."""

    @abc.abstractmethod
    def note(self, text: str) -> None:
        """One line that stays: a phase, a fault, a finding."""

    @abc.abstractmethod
    def status(self, text: str) -> None:
        """The one live line, replaced every second."""


class QuietUi(Ui):
    def note(self, text: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass


@dataclass
class ChaosNetwork(BenchNetwork):
    """The bench's network, with every peer reached through the proxy."""

    peer_ports: dict[tuple[str, str], int] = field(default_factory=dict)
    SECTIONS: ClassVar[Mapping[str, Mapping[str, Any]]] = {"delivery": CHAOS_DELIVERY}
    DRILL: ClassVar[str] = "chaos"

    def peer_urls(self) -> dict[tuple[str, str], str]:
        return {pair: f"https://127.0.0.1:{port}" for pair, port in self.peer_ports.items()}


@dataclass
class NodeWatch:
    """What the soak knows about one node across its incarnations."""

    generation: int = 0  # bumped by every kill, so a stale "it listens" is ignored
    down: bool = False  # killed, and not listening again yet
    kills: int = 0
    restarts: int = 0
    pids: list[int] = field(default_factory=list)
    max_rss_kib: int = 0
    restart_s: list[float] = field(default_factory=list)  # start -> listening


def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process in KiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Soak:
    def __init__(self, options: SoakOptions, workdir: Path, ui: Ui | None = None) -> None:
        self.options = options
        self.workdir = workdir
        self.ui = ui or QuietUi()
        self.plan: FaultPlan = make_plan(
            seed=options.seed, nodes=NODE_IDS, kills=options.kills,
            partitions=options.partitions, duration_s=options.duration_s, shape=options.shape)
        self.net = ChaosNetwork(workdir / "network", node_ids=NODE_IDS,
                                log_level=options.log_level)
        self.proxy = ChaosProxy(NODE_IDS)
        self.watch = {nid: NodeWatch() for nid in NODE_IDS}
        self.ledger: list[Sent] = []
        self.events: list[dict[str, Any]] = []
        self.findings: list[str] = []
        self.kills = 0
        self.partitions = 0
        self.skipped = 0
        self.sessions: dict[str, NodeSession] = {}
        # officer -> envelopes accepted for them, oldest first, that they may forward
        self.forwardable: dict[str, deque[Envelope]] = {}
        self._stack = contextlib.AsyncExitStack()
        self._tasks: set[asyncio.Task[None]] = set()
        self._t0 = time.monotonic()
        self._phase = "setup"
        self.timings: dict[str, float] = {}
        self.cluster: Cluster | None = None  # --store postgresql: the nodes' server

    # --- the run ------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Every phase, then the document of figures; always stops what it started."""
        started = datetime.now(UTC)
        begin = time.monotonic()
        sampler = asyncio.create_task(self._sample())
        try:
            await self._timed("setup", self._setup())
            await self._timed("chaos", self._chaos())
            drained = await self._timed("drain", self._settle())
            await self._timed("effects", self._await_effects())
            self._phase = "check"
            self.ui.note("check: stopping the nodes, then reading their databases")
            killed = await asyncio.to_thread(self.net.stop_all)
            for pid in killed:
                self.findings.append(f"a node (pid {pid}) ignored SIGTERM for the grace "
                                     f"period and was killed")
            accounting = await asyncio.to_thread(account, self.ledger, self.databases(),
                                                 self.keys())
            accounting.chains = await verify_chains(self.databases())
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await self.close()
        self.timings["total"] = time.monotonic() - begin
        self._write_ledger()
        return self.document(accounting, drained=drained, started=started)

    async def close(self) -> None:
        """Stop every node and the proxy (safe to call twice, and from a test's fixture)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stack.aclose()
        await asyncio.to_thread(self.net.stop_all)
        await self.proxy.close()
        if self.cluster is not None:  # after the nodes: stopped by its PID
            await asyncio.to_thread(self.cluster.destroy)
            self.cluster = None

    def _start_postgresql(self) -> None:
        """A throwaway cluster under the work directory, one database per node."""
        self.ui.note("setup: a PostgreSQL cluster, one database per node")
        self.cluster = make_cluster(self.workdir)
        for nid in NODE_IDS:
            dsn = self.cluster.create_database(f"node_{nid.replace('-', '_')}")
            self.net.pg_stores[nid] = PgDatabase(dsn, self.cluster.password_file)

    async def _timed(self, name: str, work: Any) -> Any:
        self._phase = name
        begin = time.monotonic()
        try:
            return await work
        finally:
            self.timings[name] = time.monotonic() - begin

    def databases(self) -> dict[str, observe.Where]:
        return {nid: self.net.store(nid) for nid in NODE_IDS}

    def keys(self) -> dict[str, Sequence[crypto.EncryptionKeyPair]]:
        """Every officer's decryption keys: the check opens what was sealed for them."""
        return {oid: o.keystore.encryption_keys for oid, o in self.net.officers.items()}

    # --- setup --------------------------------------------------------------------------

    async def _setup(self) -> None:
        deadline = Deadline(self.options.setup_timeout_s)
        self.ui.note(f"setup: PKI, four nodes behind the proxy, "
                     f"{self.options.officers_per_node * len(NODE_IDS)} officers "
                     f"(seed {self.options.seed})")
        await self.proxy.start()
        if self.options.store == "postgresql":
            await asyncio.to_thread(self._start_postgresql)
        self.net.peer_ports = {(s, d): self.proxy.port(s, d)
                               for s in NODE_IDS for d in NODE_IDS if s != d}
        await asyncio.to_thread(self.net.create)
        self.proxy.targets = {nid: node.federation_port for nid, node in self.net.nodes.items()}
        specs = tuple(OfficerSpec(f"{nid}/soak{i}", f"Soak officer {i} ({nid.upper()})")
                      for nid in NODE_IDS for i in range(1, self.options.officers_per_node + 1))
        await asyncio.to_thread(self.net.enrol, specs, deadline)
        for nid in NODE_IDS:
            self._started(nid, self.net.start_node(nid))
        for nid in NODE_IDS:
            await asyncio.to_thread(self.net.wait_node, nid, deadline)
        officers = [s.id for s in specs]
        await asyncio.to_thread(deadline.wait_for, lambda: self._directories_complete(officers),
                                what="every officer's card to reach every node", interval=0.2)
        for officer in officers:
            session = await self._stack.enter_async_context(
                NodeSession(self.net.officers[officer].keystore, timeout_s=15.0,
                            connect_timeout_s=3.0))
            await session.login()
            self.sessions[officer] = session

    def _directories_complete(self, officers: list[str]) -> bool:
        for nid in NODE_IDS:
            try:
                known = observe.officers(self.net.store(nid))
            except observe.ReadError:
                return False
            if not set(officers) <= known:
                return False
        return True

    def _started(self, nid: str, pid: int) -> None:
        self.watch[nid].pids.append(pid)

    # --- chaos --------------------------------------------------------------------------

    async def _chaos(self) -> None:
        o = self.options
        self.ui.note(f"chaos: {o.duration_s:g} s, {self.plan.kills} kills and "
                     f"{self.plan.partitions} partitions planned, ~{o.rate:g} envelopes/s")
        stop = asyncio.Event()
        self._t0 = time.monotonic()
        officers = list(self.sessions)
        senders = [asyncio.create_task(self._officer(officer, officers, stop))
                   for officer in officers]
        ticker = asyncio.create_task(self._tick())
        try:
            await self._replay()
            stop.set()
            async with asyncio.timeout(o.patience_s + 30.0):
                await asyncio.gather(*senders)
        finally:
            stop.set()
            for task in (*senders, ticker):
                task.cancel()
            for task in (*senders, ticker):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _replay(self) -> None:
        """Apply each fault at its time (late ones at once); drop kills and cuts that would
        start after the overrun limit, never a restart or a heal."""
        end = self._t0 + self.options.duration_s
        for fault in self.plan.faults:
            await _sleep_until(self._t0 + fault.at_s)
            late = time.monotonic() > end + OVERRUN_S
            if late and fault.action in (Action.KILL, Action.CUT):
                self.skipped += 1
                continue
            await self._apply(fault)
        await _sleep_until(end)

    async def _apply(self, fault: Fault) -> None:
        t = round(time.monotonic() - self._t0, 2)
        record: dict[str, Any] = {"t_s": t, "planned_s": fault.at_s,
                                  "action": fault.action.value, "target": list(fault.target)}
        if fault.action is Action.KILL:
            (nid,) = fault.target
            watch = self.watch[nid]
            if not self.net.nodes[nid].running():
                self.skipped += 1
                record["skipped"] = "not running"
            else:
                watch.generation += 1
                watch.down = True
                record["pid"] = self.net.pid(nid)
                await asyncio.to_thread(self.net.stop_node, nid, kill=True)
                watch.kills += 1
                self.kills += 1
        elif fault.action is Action.RESTART:
            (nid,) = fault.target
            await self._restart(nid, record)
        elif fault.action is Action.CUT:
            a, b = fault.target
            record["aborted_connections"] = self.proxy.cut(a, b)
            self.partitions += 1
        else:
            a, b = fault.target
            self.proxy.heal(a, b)
        self.events.append(record)
        detail = "".join(f", {k} {v}" for k, v in record.items()
                         if k in ("pid", "aborted_connections", "skipped"))
        self.ui.note(f"t={t:7.2f}s  {fault.describe()}{detail}")

    async def _restart(self, nid: str, record: dict[str, Any]) -> None:
        watch = self.watch[nid]
        if self.net.nodes[nid].running():
            record["skipped"] = "already running"
            return
        generation = watch.generation
        begin = time.monotonic()
        pid = self.net.start_node(nid)
        self._started(nid, pid)
        watch.restarts += 1
        record["pid"] = pid

        async def listening() -> None:
            try:
                await asyncio.to_thread(self.net.wait_node, nid, Deadline(120))
            except DemoError as exc:
                if watch.generation == generation:  # not our kill: it died by itself
                    self.findings.append(f"node {nid} did not come back after a restart: "
                                         f"{str(exc)[-600:]}")
                return
            if watch.generation == generation:
                watch.down = False
                watch.restart_s.append(time.monotonic() - begin)

        self._spawn(listening())

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _officer(self, officer: str, officers: list[str], stop: asyncio.Event) -> None:
        """One officer sending at a random pace until ``stop``."""
        o = self.options
        rng = random.Random(f"{o.seed}/{officer}")
        keystores = {oid: self.net.officers[oid].keystore for oid in officers}
        session = self.sessions[officer]
        home = node_of(officer)
        per_officer = o.rate / len(officers)
        due = time.monotonic()
        while not stop.is_set():
            due = max(due + rng.expovariate(per_officer), time.monotonic() - 1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - time.monotonic())):
                    await stop.wait()
            if stop.is_set():
                return
            made = None
            if rng.random() < o.forward_share and self.forwardable.get(officer):
                arrived = await asyncio.to_thread(self._arrived, officer)
                made = self._forward(rng, officer, officers, arrived)
            if made is None:
                draft = traffic.compose(rng, officer, officers, NODE_IDS,
                                        refuse_share=o.refuse_share,
                                        request_share=o.request_share)
                envelope = traffic.seal(draft, keystores, rng.randbytes(o.payload_bytes))
                sent = Sent(envelope.id, officer, draft.recipients,
                            draft.precedence.name.lower(), draft.expect_refusal,
                            request=draft.urgency is not None)
            else:
                envelope, sent = made
            self.ledger.append(sent)
            await traffic.submit(session, sent, envelope.to_bytes(), patience_s=o.patience_s,
                                 origin_down=functools.partial(self._is_down, home),
                                 on_accepted=functools.partial(self._accepted, envelope))

    def _arrived(self, officer: str) -> set[bytes]:
        """The envelopes in ``officer``'s inbox now (none while the file is busy)."""
        try:
            return set(observe.inbox_envelope_ids(self.net.store(node_of(officer)),
                                                  officer))
        except observe.ReadError:
            return set()

    def _forward(self, rng: random.Random, officer: str, officers: list[str],
                 arrived: set[bytes]) -> tuple[Envelope, Sent] | None:
        """A consented forward of the oldest envelope already in ``officer``'s inbox, to
        another officer (on this node or another); None if nothing has arrived yet."""
        queue = self.forwardable.get(officer)
        if not queue:
            return None
        original = next((e for e in queue if e.id in arrived), None)
        if original is None:
            return None
        queue.remove(original)
        owner = original.header.sender
        targets = [t for t in officers if t not in (officer, owner)]
        if not targets:
            return None
        target = rng.choice(targets)
        ks = {oid: self.net.officers[oid].keystore for oid in (officer, target, owner)}
        envelope = traffic.forward(original, ks[officer], ks[target], ks[owner])
        return envelope, Sent(envelope.id, officer, (target,),
                              envelope.header.precedence.name.lower(), None,
                              forward_of=original.id, consent_owner=owner)

    def _accepted(self, envelope: Envelope, sent: Sent) -> None:
        """Note the conditions of the acceptance, and let the recipients forward it."""
        self._conditions(sent)
        if sent.forward_of is None:  # forwards of forwards would nest consents: not here
            for recipient in sent.recipients:
                self.forwardable.setdefault(recipient, deque(maxlen=FORWARDABLE)).append(
                    envelope)

    def _is_down(self, nid: str) -> bool:
        return self.watch[nid].down

    def _conditions(self, sent: Sent) -> None:
        """Note what was broken between the origin and the recipients at acceptance."""
        nodes = {node_of(r) for r in sent.recipients} - {sent.origin}
        sent.destination_down = any(self.watch[n].down for n in nodes)
        sent.link_cut = any(self.proxy.is_cut(sent.origin, n) for n in nodes)

    async def _sample(self) -> None:
        """Each node's VmRSS every SAMPLE_S, whichever process it currently is."""
        while True:
            for nid, node in self.net.nodes.items():
                pid = node.pid
                if pid is not None and node.running():
                    kib = rss_kib(pid)
                    if kib is not None:
                        watch = self.watch[nid]
                        watch.max_rss_kib = max(watch.max_rss_kib, kib)
            await asyncio.sleep(SAMPLE_S)

    async def _tick(self) -> None:
        while True:
            self.ui.status(self.status_line())
            await asyncio.sleep(1.0)

    def status_line(self) -> str:
        t = time.monotonic() - self._t0
        counts = {"accepted": 0, "refused": 0, "unanswered": 0}
        for s in self.ledger:
            counts[s.outcome.value] += 1
        down = ",".join(n for n, w in self.watch.items() if w.down) or "-"
        cut = ",".join(sorted("|".join(sorted(p)) for p in self.proxy.cut_pairs)) or "-"
        rss = max(w.max_rss_kib for w in self.watch.values()) / 1024
        return (f"{self._phase} {t:5.0f}/{self.options.duration_s:g}s  "
                f"kills {self.kills}/{self.plan.kills}  "
                f"partitions {self.partitions}/{self.plan.partitions}  "
                f"sent {len(self.ledger)} (accepted {counts['accepted']}, refused "
                f"{counts['refused']}, in flight or unanswered {counts['unanswered']})  "
                f"down {down}  cut {cut}  max RSS {rss:.0f} MB")

    # --- settle -------------------------------------------------------------------------

    async def _settle(self) -> bool:
        """Heal, bring every node back, then wait for every outbox to drain; True if it
        drained within the deadline (else the accounting names what is missing)."""
        self.proxy.heal_all()
        deadline = Deadline(self.options.drain_timeout_s)
        for nid, node in self.net.nodes.items():
            if not node.running():
                self.ui.note(f"settle: starting {nid}")
                self._started(nid, self.net.start_node(nid))
        for nid in NODE_IDS:
            await asyncio.to_thread(self.net.wait_node, nid, deadline)
            self.watch[nid].down = False
        self.ui.note("settle: every link healed and every node up; draining the outboxes")
        ids = {s.id for s in self.ledger}
        databases = self.databases()
        drained = False
        while deadline.remaining() > 0:
            facts = await asyncio.to_thread(_read_all, databases, ids)
            pending = sum(pending_hops(f.outbox) for f in facts.values())
            missing = account_facts(self.ledger, facts).lost_count
            self.ui.status(f"drain: {pending} hops queued, {missing} copies not arrived yet, "
                           f"{deadline.remaining():.0f} s left")
            if pending == 0 and missing == 0:
                drained = True
                break
            await asyncio.sleep(min(0.5, deadline.remaining()))
        if not drained:
            self.findings.append(f"the outboxes did not drain within "
                                 f"{self.options.drain_timeout_s:g} s")
        return drained

    async def _await_effects(self) -> None:
        """Give the nodes time to finish what they owe: poll the count of effects until it
        has not changed for EFFECTS_STABLE_S, or ``effects_timeout_s`` passes (the check
        then names what is still missing)."""
        deadline = Deadline(self.options.effects_timeout_s)
        databases, keys = self.databases(), self.keys()
        ids = {s.id for s in self.ledger}
        last: tuple[int, ...] | None = None
        since = time.monotonic()
        while deadline.remaining() > 0:
            facts = await asyncio.to_thread(_read_all, databases, ids)
            owed = account_facts(self.ledger, facts).owed
            effects = await asyncio.to_thread(count_effects, owed, databases, keys)
            now = time.monotonic()
            if effects.signature != last:
                last, since = effects.signature, now
            elif now - since >= EFFECTS_STABLE_S:
                return
            figures = effects.figures()
            self.ui.status(f"effects: {figures['effects_found']}/{figures['effects_owed']} "
                           f"found, {figures['effects_missing']} missing, "
                           f"{figures['effects_twice']} twice, "
                           f"{deadline.remaining():.0f} s left")
            await asyncio.sleep(min(1.0, deadline.remaining()))

    # --- the figures --------------------------------------------------------------------

    def document(self, accounting: Accounting, *, drained: bool,
                 started: datetime) -> dict[str, Any]:
        o = self.options
        nodes: dict[str, Any] = {}
        for nid, watch in self.watch.items():
            chain = accounting.chains.get(nid)
            nodes[nid] = {
                "kills": watch.kills, "restarts": watch.restarts, "processes": len(watch.pids),
                "max_rss_mb": round(watch.max_rss_kib / 1024, 1),
                "restart_to_listen_s_max": round(max(watch.restart_s), 2)
                if watch.restart_s else None,
                "audit_entries": chain.entries if chain else None,
                "audit_ok": chain.ok if chain else False,
                "outbox": accounting.outbox.get(nid, {}),
            }
        failures = accounting.failures() + list(self.findings)
        for nid, info in nodes.items():
            if info["max_rss_mb"] > o.rss_limit_mb:
                failures.append(f"node {nid} reached {info['max_rss_mb']} MB RSS, above the "
                                f"{o.rss_limit_mb:g} MB bound")
        restarts = [s for w in self.watch.values() for s in w.restart_s]
        proxy = self.proxy.stats().values()
        figures = {
            "kills": self.kills, "partitions": self.partitions,
            "kills_planned": self.plan.kills, "partitions_planned": self.plan.partitions,
            "faults_skipped": self.skipped,
            **accounting.figures(),
            "accepted_while_destination_down": sum(s.destination_down for s in self.ledger),
            "accepted_while_link_cut": sum(s.link_cut for s in self.ledger),
            "submitted_while_origin_down": sum(s.origin_was_down for s in self.ledger),
            "resubmissions": sum(max(0, s.attempts - 1) for s in self.ledger),
            "connections_cut": sum(st.aborted for st in proxy),
            "connections_dropped": sum(st.dropped for st in proxy),
            "restart_to_listen_s_max": round(max(restarts), 2) if restarts else None,
            "max_rss_mb": max((n["max_rss_mb"] for n in nodes.values()), default=0.0),
            "drained": drained,
            "chaos_s": round(self.timings.get("chaos", 0.0), 1),
            "drain_s": round(self.timings.get("drain", 0.0), 1),
            "effects_wait_s": round(self.timings.get("effects", 0.0), 1),
            "duration_s": round(self.timings.get("total", 0.0), 1),
        }
        return {
            "tool": "liaison chaos",
            "ok": not failures,
            "failures": failures,
            "seed": o.seed,
            "options": {k: v for k, v in asdict(o).items() if k != "shape"}
            | {"shape": asdict(o.shape)},
            "started": started.isoformat(timespec="seconds"),
            "figures": figures,
            "nodes": nodes,
            "phases_s": {k: round(v, 1) for k, v in self.timings.items()},
            "examples": accounting.examples(),
            "faults": self.events,
            "workdir": str(self.workdir),
            "machine": machine_facts(),
        }

    def _write_ledger(self) -> None:
        """Every envelope as its sender saw it, for a post-mortem with --keep."""
        with contextlib.suppress(OSError):
            path = self.workdir / "ledger.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for s in self.ledger:
                    out.write(json.dumps(s.to_json()) + "\n")


async def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _read_all(databases: dict[str, observe.Where], ids: set[bytes]) -> dict[str, NodeFacts]:
    return {nid: read_node(path, ids) for nid, path in databases.items()}
