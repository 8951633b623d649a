"""What the bench sends, and the machinery that sends it and watches it arrive.

Envelopes are sealed and signed in advance, on "the officer's machine": that cost belongs
to the client, not to the node, so it is kept out of every figure. The same envelope bytes
are the payload offered to the baseline brokers (prefixed by the envelope id, which is the
key every sink records), so each broker carries exactly the same bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liaison_net import timeline
from liaison_net.bench.sinks import SinkSpec, read_records, sink_main
from liaison_net.core import crypto, sealing
from liaison_net.core.envelope import Kind, Precedence
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    SourceReliability,
    Tlp,
)

SENDER = "nl/bench-sender"
RECIPIENT = "be/bench-desk"
Progress = Callable[[int], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def bench_tag(owner_node: str) -> OwnershipTag:
    """An ordinary Benelux tag (H0, TLP:AMBER): every layer checks it, none refuses it."""
    return OwnershipTag(
        owner=Owner(owner_node, "liaison"), handling=Handling.H0, tlp=Tlp.AMBER,
        evaluation=Evaluation(SourceReliability.B, InformationAccuracy.KNOWN_TO_SOURCE),
        share_with=frozenset({"be", "nl", "lu"}), permitted_actions=frozenset(),
        purpose="liaison bench", retain_until=now_ms() + 30 * DAY_MS)


@dataclass
class Batch:
    """Sealed envelopes and their ids (the keys the sinks record)."""

    keys: list[bytes]
    raws: list[bytes]

    def __len__(self) -> int:
        return len(self.keys)

    def payload(self, i: int) -> bytes:
        """What a baseline broker carries: the key, then the very envelope bytes."""
        return self.keys[i] + self.raws[i]

    def average_bytes(self) -> float:
        """The average envelope's size on the wire (what the disk figures compare with)."""
        return sum(map(len, self.raws)) / len(self.raws) if self.raws else 0.0

    def write_keys(self, path: Path) -> Path:
        path.write_bytes(b"".join(self.keys))
        return path


def seal_batch(sender: crypto.SigningKeyPair, recipient_public: bytes, n: int, *,
               payload_bytes: int, ttl_ms: int = 8 * HOUR_MS,
               progress: Progress | None = None) -> Batch:
    """``n`` envelopes of ``payload_bytes`` of content from SENDER to RECIPIENT."""
    tag = bench_tag("nl")
    recipient = [sealing.RecipientKey(RECIPIENT, recipient_public)]
    keys: list[bytes] = []
    raws: list[bytes] = []
    for i in range(n):
        now = now_ms()
        envelope = sealing.seal(sender=SENDER, sender_key=sender, recipients=recipient, tag=tag,
                                plaintext=os.urandom(payload_bytes), now=now,
                                expires=now + ttl_ms, kind=Kind.MESSAGE,
                                precedence=Precedence.ROUTINE)
        keys.append(envelope.id)
        raws.append(envelope.to_bytes())
        if progress is not None and (i + 1) % 500 == 0:
            progress(i + 1)
    if progress is not None:
        progress(n)
    return Batch(keys, raws)


# --- submitting ---------------------------------------------------------------------------


Submit = Callable[[bytes, bytes], Awaitable[None]]
#: Several envelopes in one request: per envelope None (acknowledged) or why not.
SubmitMany = Callable[[list[bytes]], Awaitable[list[str | None]]]


@dataclass
class Submitted:
    """When each envelope was offered (or due, when paced) and when the origin accepted it."""

    start_ns: dict[int, int] = field(default_factory=dict)
    accepted_ns: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def accepted_keys(self, batch: Batch) -> set[bytes]:
        return {batch.keys[i] for i in self.accepted_ns}

    def accept_rate(self) -> float:
        if not self.accepted_ns:
            return 0.0
        span = (max(self.accepted_ns.values()) - min(self.start_ns.values())) / 1e9
        return len(self.accepted_ns) / span if span > 0 else 0.0


async def _offer(submit: Submit, batch: Batch, i: int, out: Submitted, retries: int) -> None:
    for attempt in range(retries + 1):
        timeline.mark("b.submit", batch.keys[i])
        try:
            await submit(batch.keys[i], batch.raws[i])
        except Exception as exc:  # any failure: the envelope was not accepted (yet)
            if attempt == retries:
                out.failed[i] = f"{type(exc).__name__}: {exc}"[:200]
                return
            await asyncio.sleep(0.2)
        else:
            out.accepted_ns[i] = time.time_ns()
            timeline.mark("b.accepted", batch.keys[i])
            out.failed.pop(i, None)
            return


async def _offer_many(submit_many: SubmitMany, batch: Batch, group: list[int], out: Submitted,
                      retries: int) -> None:
    """One request for ``group``; what was not acknowledged is offered again, alone."""
    todo = group
    for attempt in range(retries + 1):
        try:
            answers = await submit_many([batch.raws[i] for i in todo])
        except Exception as exc:  # the whole request failed: none was accepted (yet)
            answers = [f"{type(exc).__name__}: {exc}"[:200]] * len(todo)
        now = time.time_ns()
        left = []
        for i, why in zip(todo, answers, strict=True):
            if why is None:
                out.accepted_ns[i] = now
                out.failed.pop(i, None)
            else:
                out.failed[i] = why
                left.append(i)
        todo = left
        if not todo:
            return
        if attempt < retries:
            await asyncio.sleep(0.2)


async def submit_stream(submit: Submit, batch: Batch, *, concurrency: int,
                        on_accepted: Progress | None = None, retries: int = 3,
                        out: Submitted | None = None, batch_size: int = 1,
                        submit_many: SubmitMany | None = None) -> Submitted:
    """Offer every envelope as fast as the origin takes them, ``concurrency`` at a time
    (into ``out`` if given, so a watcher can follow the acceptances as they come); with
    ``submit_many`` and ``batch_size`` > 1, that many per request."""
    out = Submitted() if out is None else out
    indexes = iter(range(len(batch)))

    async def worker(out: Submitted) -> None:
        if submit_many is not None and batch_size > 1:
            while group := list(itertools.islice(indexes, batch_size)):
                started = time.time_ns()
                out.start_ns.update((i, started) for i in group)
                await _offer_many(submit_many, batch, group, out, retries)
                if on_accepted is not None:
                    on_accepted(len(out.accepted_ns))
            return
        for i in indexes:
            out.start_ns[i] = time.time_ns()
            await _offer(submit, batch, i, out, retries)
            if on_accepted is not None:
                on_accepted(len(out.accepted_ns))

    await asyncio.gather(*(worker(out) for _ in range(concurrency)))
    return out


#: asyncio's loop wakes in whole milliseconds (epoll's timeout is rounded up), so a sleep to a
#: due time ends up to ~1 ms late; a pacer counting latency from the due time would add its own
#: lateness to every figure. Waits longer than this end with a precise sleep in a thread.
PRECISE_TAIL_S = 0.002


async def sleep_until(due_ns: int, precise: concurrent.futures.Executor | None = None) -> None:
    """Until ``time.time_ns()`` reaches ``due_ns``: the bulk on the loop, and with
    ``precise``, a wait longer than ``PRECISE_TAIL_S`` ends with a ``time.sleep`` in that
    executor's thread (nanosecond timer; the loop stays free and is woken at once by the
    thread's answer). Shorter waits (a fast pace) stay on the loop: a thread hop per
    envelope at 1,000/s would cost the load generator more than it saves."""
    left = (due_ns - time.time_ns()) / 1e9
    if left <= 0:
        return
    if precise is None or left <= PRECISE_TAIL_S:
        await asyncio.sleep(left)
        return
    await asyncio.sleep(left - PRECISE_TAIL_S)
    tail = (due_ns - time.time_ns()) / 1e9
    if tail > 0:
        await asyncio.get_running_loop().run_in_executor(precise, time.sleep, tail)


async def submit_paced(submit: Submit, batch: Batch, *, rate: float, max_in_flight: int,
                       on_accepted: Progress | None = None) -> Submitted:
    """Offer envelope i at t0 + i/rate, whatever happened to the earlier ones.

    ``start_ns`` is the *due* time, so a slow answer delays no later measurement (no
    coordinated omission): latency is always counted from when the envelope was due.
    """
    out = Submitted()
    gate = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.time_ns() + 20_000_000
    interval = 1e9 / rate

    async def one(i: int) -> None:
        async with gate:
            await _offer(submit, batch, i, out, retries=3)
        if on_accepted is not None:
            on_accepted(len(out.accepted_ns))

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-pacer") as timer:
        await _pace(batch, out, t0, interval, one, tasks, timer)
    if tasks:
        await asyncio.gather(*tasks)
    return out


async def _pace(batch: Batch, out: Submitted, t0: int, interval: float,
                one: Callable[[int], Coroutine[Any, Any, None]], tasks: set[asyncio.Task[None]],
                timer: concurrent.futures.Executor) -> None:
    """Start envelope i's offer when it falls due (``one(i)``, a task of ``tasks``)."""
    i = 0
    while i < len(batch):
        now = time.time_ns()
        while i < len(batch) and t0 + i * interval <= now:
            out.start_ns[i] = int(t0 + i * interval)
            timeline.mark_at(timeline.now() - (now - out.start_ns[i]), "b.due", batch.keys[i])
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < len(batch):
            await sleep_until(int(t0 + i * interval), timer)


# --- watching arrivals --------------------------------------------------------------------


class Sink:
    """The sink process of one run (see ``sinks``): start, poll its counts, stop, read."""

    def __init__(self, spec: SinkSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.spec = spec
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._distinct = ctx.Value("q", 0, lock=False)
        self._total = ctx.Value("q", 0, lock=False)
        self._cpu = ctx.Array("d", 2, lock=False)  # CPU seconds when ready, when done
        self._proc = ctx.Process(target=sink_main, name=f"bench-sink-{spec.kind}",
                                 args=(spec, self._stop, self._ready, self._distinct,
                                       self._total, self._cpu), daemon=True)

    def start(self, timeout: float) -> None:
        self._proc.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if not self._proc.is_alive():
                raise RuntimeError(f"the {self.spec.kind} sink exited with code "
                                   f"{self._proc.exitcode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {self.spec.kind} sink was not ready in {timeout:g} s")

    @property
    def distinct(self) -> int:
        return int(self._distinct.value)

    @property
    def total(self) -> int:
        return int(self._total.value)

    @property
    def cpu_s(self) -> float | None:
        """The CPU seconds the sink spent from ready to done; None before it is done, or if
        it never said either (killed, failed to start)."""
        at_ready, at_end = self._cpu[0], self._cpu[1]
        return at_end - at_ready if at_ready and at_end else None

    def cpu_now(self) -> float | None:
        """The sink's CPU seconds so far (its whole life): from /proc while it runs, what it
        noted when done after; None if neither is known."""
        from liaison_net.bench.cost import cpu_seconds  # cost imports this module

        if self._proc.pid is not None and self._proc.is_alive():
            now = cpu_seconds(self._proc.pid)
            if now is not None:
                return now
        return self._cpu[1] or None

    def stop(self) -> list[tuple[bytes, int]]:
        """Stop the process and return every arrival (key, ns), duplicates included."""
        if self._proc.pid is not None:
            self._stop.set()
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
        return read_records(Path(self.spec.out_file))


async def wait_arrivals(sink: Sink, expected: int, *, stall_s: float, deadline_s: float,
                        progress: Progress | None = None) -> bool:
    """Wait until ``expected`` distinct keys arrived; False after ``stall_s`` without any
    progress or ``deadline_s`` in all (what is missing then is counted lost)."""
    end = time.monotonic() + deadline_s
    last, last_change = -1, time.monotonic()
    while True:
        seen = sink.distinct
        if progress is not None:
            progress(seen)
        if seen >= expected:
            return True
        now = time.monotonic()
        if seen != last:
            last, last_change = seen, now
        if now - last_change > stall_s or now > end:
            return False
        await asyncio.sleep(0.02)


def first_arrivals(records: Iterable[tuple[bytes, int]]) -> dict[bytes, int]:
    first: dict[bytes, int] = {}
    for key, at in records:
        if key not in first or at < first[key]:
            first[key] = at
    return first


def latencies_ms(batch: Batch, sent: Submitted, first: dict[bytes, int]) -> list[float]:
    out = []
    for i, start in sent.start_ns.items():
        at = first.get(batch.keys[i])
        if at is not None:
            out.append(max(0.0, (at - start) / 1e6))
    return out


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def describe(exc: BaseException) -> str:
    """An exception as one bounded line for the report."""
    return f"{type(exc).__name__}: {exc}"[:300]
