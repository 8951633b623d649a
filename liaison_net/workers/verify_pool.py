"""Envelope verification in worker processes beside the node's single writer process.

Why this split (docs/performance.md, "More than one core"): profiled, decode + verify is
the largest piece of a node's CPU that needs no database state, at the origin (officer
submits, single or batched) and more so at the destination (federation transactions, where
TLS and HTTP are a few per cent). It is pure core code (``verify_frame``), so it moves
without moving any decision: the node still looks every signer key up (revocation, grace),
runs every check that needs the store, commits with ``synchronous=FULL`` and only then
answers "accepted". Verification still happens at every node, in its own processes.

How: ``[workers] verify = N`` slots, each a supervised loop (``run_slot``) that, at the
first bulk batch (not at the node's start: a node that never sees one pays nothing), starts
one ``python -m liaison_net.workers.verify_worker`` with pipes as stdin/stdout (private to
the two processes: no path another user could open), sends it the node's limits, then
answers. Only bulk work goes to a worker: ``verify_many`` of a federation transaction or a
batch submit of ``BULK_MIN`` envelopes or more is one frame (at most 64 envelopes, 4 MiB of
them, spread over the workers), answered in one frame. A single envelope, or a few, is
verified in the node's process: a round trip to a worker costs more than it saves there
(docs/performance.md, lanes verifyw16 and bulkv16).

On failure nothing is lost: a worker that dies, sends a bad frame or does not answer within
``answer_timeout_s`` is killed by its PID, every envelope it held is verified in the node's
own process, and the supervisor starts another. An envelope a worker refuses is verified
again here, so a refusal raises exactly the error it raises without workers. With no live
worker (starting, restarting, given up) the node verifies in its own process, as with
``verify = 0``. Workers end with their stdin: when the node stops them, or when the node
dies, so none outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from liaison_net.core.envelope import Body, Envelope, Header, UnverifiedFrame, received
from liaison_net.core.limits import Limits
from liaison_net.core.sealing import SignerKey, verify_frame
from liaison_net.errors import BadFrame, LiaisonError
from liaison_net.workers import framing

log = structlog.get_logger("liaison.workers")

MAX_SLOTS = 8
#: The smallest batch a worker is sent. A frame to a worker and its answer cost the node's
#: process ~85 µs of CPU (pipe write, wake-up, read, one unpickle) plus ~9 µs per envelope,
#: against ~62 µs to verify one here: at 8 the node spends ~60 % less on the batch (at 4
#: ~20-45 %, at 16 ~70 %: little more), and a transaction of a few envelopes, the light
#: load's, never waits for a worker's round trip (docs/performance.md, lane bulkv16).
BULK_MIN = 8
MAX_CHUNK_RAW_BYTES = 4 * 1024 * 1024  # the answer (header and body, pickled) < 8 MiB
MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024  # per worker: what may wait in its pipe and buffer
STOP_GRACE_S = 2.0  # a worker whose stdin closed has this long to exit before SIGKILL
WATCH_TICK_S = 0.5  # how often a slot checks its oldest unanswered request
WORKER_COMMAND = (sys.executable, "-m", "liaison_net.workers.verify_worker")
_BUILTINS = {"frozenset", "set", "tuple", "list", "dict", "bytes", "int", "str"}


class _CoreOnly(pickle.Unpickler):
    """Answers are envelopes: only classes of the sans-I/O core may be rebuilt.

    A name is one plain attribute of its module and must be a class: from protocol 4 on,
    pickle follows a dotted name attribute by attribute, so ``__builtins__.get`` of any
    core module would reach ``eval``, and a core function would be called with whatever
    arguments the answer holds."""

    def find_class(self, module: str, name: str) -> Any:
        if ("." not in name and not name.startswith("_")
                and (module.startswith("liaison_net.core.")
                     or (module == "builtins" and name in _BUILTINS))):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise BadFrame(f"an answer names {module}.{name}, not a class of the core")


def _answers(blob: bytes, count: int) -> list[tuple[bytes, Header, Body] | None]:
    """A worker's answers to ``count`` items: one pickled list, rebuilt from core classes
    only; every entry (signature, header, body) or None."""
    try:
        value = _CoreOnly(io.BytesIO(blob)).load()
    except BadFrame:
        raise
    except Exception as exc:  # unpickling bytes: any failure is a bad frame, named once
        raise BadFrame(f"an answer is not a list of envelopes: {type(exc).__name__}") from exc
    if not (isinstance(value, list) and len(value) == count and all(
            v is None or (isinstance(v, tuple) and len(v) == 3 and isinstance(v[0], bytes)
                          and isinstance(v[1], Header) and isinstance(v[2], Body))
            for v in value)):
        raise BadFrame(f"an answer is not {count} envelopes' signatures, headers and bodies")
    return value


def _envelope(frame: UnverifiedFrame, signer: SignerKey, signature: bytes, header: Header,
              body: Body) -> Envelope:
    """The envelope of ``frame`` from a worker's answer. The answer names the signature it
    verified: an answer that reached the wrong item (a bug in the order of answers) is
    refused, never paired with another envelope's bytes."""
    if signature != frame.signature or header.sender_key != frame.signer_key_id \
            or header.sender != signer.principal:
        raise BadFrame("an answer is another envelope than the one asked")
    return received(Envelope(header, body, frame.header_bytes, frame.body_bytes,
                             frame.signature), frame.raw)


@dataclass
class _Item:
    raw: bytes
    frame: UnverifiedFrame
    signer: SignerKey
    done: asyncio.Future[Envelope]


@dataclass
class _Worker:
    proc: asyncio.subprocess.Process
    in_flight: dict[int, tuple[list[_Item], float]] = field(default_factory=dict)
    items: int = 0  # envelopes sent and not answered
    bytes: int = 0  # their size

    def sent(self, seq: int, items: list[_Item], size: int) -> None:
        self.in_flight[seq] = (items, time.monotonic())
        self.items += len(items)
        self.bytes += size

    def answered(self, seq: int) -> list[_Item] | None:
        entry = self.in_flight.pop(seq, None)
        if entry is None:
            return None
        self.items -= len(entry[0])
        self.bytes -= sum(len(i.raw) for i in entry[0])
        return entry[0]


class VerifyPool:
    def __init__(self, *, slots: int, limits: Limits, answer_timeout_s: float = 10.0,
                 max_in_flight: int = 1024, command: Sequence[str] = WORKER_COMMAND,
                 counted: Callable[[str, int], None] | None = None,
                 bulk_min: int = BULK_MIN) -> None:
        if not 0 <= slots <= MAX_SLOTS:
            raise ValueError(f"verify workers: 0 to {MAX_SLOTS}")
        self.slots = slots
        self.limits = limits
        self.answer_timeout_s = answer_timeout_s
        self.max_in_flight = max_in_flight  # per worker; beyond it, verify here
        self.command = tuple(command)
        self.bulk_min = bulk_min
        self._live: dict[int, _Worker] = {}
        self._wanted = asyncio.Event()
        self._seq = itertools.count(1)
        self.by_workers = 0  # envelopes verified by a worker
        self.here = 0  # envelopes verified in this process (no worker, refusal, failover)
        self.frames = 0  # requests sent to workers
        self._counted = counted or (lambda where, n: None)  # metrics: "worker" or "node"

    def pids(self) -> list[int]:
        """The live workers' PIDs (tests, ``liaison admin status``)."""
        return [w.proc.pid for w in self._live.values()]

    def wanted(self) -> None:
        """Let the slots start their workers (lazily: at the first bulk batch, so a node
        that never sees one, and every test node that sends a few envelopes, pays
        nothing)."""
        self._wanted.set()

    async def verify_many(self, work: Sequence[tuple[UnverifiedFrame, SignerKey | None]]
                          ) -> list[Envelope | LiaisonError]:
        """``verify_frame(frame, signer)`` of each, in order: the envelope or its refusal.
        A batch of ``bulk_min`` or more goes to a live worker as one frame (or a few: at
        most 64 envelopes each, spread over the workers); fewer, or none live, are
        verified here, where one envelope costs less than a frame to a worker and back."""
        if self.slots and len(work) >= self.bulk_min:
            self.wanted()
        if len(work) < self.bulk_min or not self._live:
            return [self._one_here(frame, signer) for frame, signer in work]
        loop = asyncio.get_running_loop()
        out: list[Envelope | LiaisonError | asyncio.Future[Envelope]] = []
        items: list[_Item] = []
        for frame, signer in work:
            if signer is None or frame.raw is None:  # refused here, exactly as here
                out.append(self._one_here(frame, signer))
                continue
            done: asyncio.Future[Envelope] = loop.create_future()
            items.append(_Item(frame.raw, frame, signer, done))
            out.append(done)
        self._send(items)
        results: list[Envelope | LiaisonError] = []
        for entry in out:
            if isinstance(entry, asyncio.Future):
                try:
                    results.append(await entry)
                except LiaisonError as exc:
                    results.append(exc)
            else:
                results.append(entry)
        return results

    def _one_here(self, frame: UnverifiedFrame,
                  signer: SignerKey | None) -> Envelope | LiaisonError:
        self.here += 1
        self._counted("node", 1)
        try:
            return verify_frame(frame, signer, now=None, limits=self.limits)
        except LiaisonError as exc:
            return exc

    # --- sending ----------------------------------------------------------------------------

    def _chunks(self, items: list[_Item], ways: int) -> list[list[_Item]]:
        """Split evenly over ``ways`` workers, but never below ``bulk_min`` a chunk (a
        frame costs the same for 8 envelopes as for 1), each within the frame limits."""
        per = max(1, min(framing.MAX_ITEMS, self.max_in_flight,
                         max(self.bulk_min, -(-len(items) // ways))))
        chunks: list[list[_Item]] = [[]]
        size = 0
        for item in items:
            n = len(item.raw)
            if chunks[-1] and (len(chunks[-1]) >= per or size + n > MAX_CHUNK_RAW_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += n
        return chunks

    def _send(self, items: list[_Item]) -> None:
        """One batch's frames to the least busy workers; what none can take, here."""
        workers = sorted(self._live.values(), key=lambda w: w.items)
        if not items:
            return
        if not workers:
            self._here(items)
            return
        for chunk, worker in zip(self._chunks(items, len(workers)), itertools.cycle(workers),
                                 strict=False):
            size = sum(len(i.raw) for i in chunk)
            if (worker.items + len(chunk) > self.max_in_flight or worker.proc.stdin is None
                    or worker.bytes + size > MAX_IN_FLIGHT_BYTES):
                self._here(chunk)
                continue
            seq = next(self._seq)
            try:
                data = framing.request(seq, [(i.raw, i.signer.principal,
                                              i.signer.public_key) for i in chunk])
                worker.proc.stdin.write(data)
            except (BadFrame, OSError, RuntimeError):  # too big, or the pipe is gone
                self._here(chunk)
                continue
            worker.sent(seq, chunk, size)
            self.frames += 1

    # --- settling ---------------------------------------------------------------------------

    def _here(self, items: list[_Item]) -> None:
        """Verify in this process: no worker, a refusal, or a worker that failed."""
        for item in items:
            if item.done.done():
                continue
            self.here += 1
            self._counted("node", 1)
            try:
                item.done.set_result(verify_frame(item.frame, item.signer, now=None,
                                                  limits=self.limits))
            except LiaisonError as exc:
                item.done.set_exception(exc)

    def _settle(self, items: list[_Item], blob: bytes) -> None:
        try:
            answers = _answers(blob, len(items))
        except BadFrame:
            self._here(items)
            raise
        bad: BadFrame | None = None
        done_before = self.by_workers
        for item, answer in zip(items, answers, strict=True):
            if answer is None or bad is not None:
                self._here([item])
                continue
            try:
                envelope = _envelope(item.frame, item.signer, *answer)
            except BadFrame as exc:
                bad = exc
                self._here([item])
                continue
            if not item.done.done():
                self.by_workers += 1
                item.done.set_result(envelope)
        self._counted("worker", self.by_workers - done_before)
        if bad is not None:
            raise bad

    # --- one worker slot, run by the node's supervisor --------------------------------------

    async def run_slot(self, slot: int) -> None:
        """Once bulk work is wanted (``wanted``), start a worker and serve its answers
        until it fails; then raise, so the supervisor restarts it (with backoff) or,
        failing too often, gives up."""
        await self._wanted.wait()
        proc = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        worker = _Worker(proc)
        try:
            assert proc.stdin is not None
            proc.stdin.write(framing.encode({"limits": dataclasses.asdict(self.limits)}))
            self._live[slot] = worker
            log.info("verify_worker.started", slot=slot, pid=proc.pid)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(worker))
                tasks.create_task(self._watch(worker))
        except* BadFrame as group:
            exc = group.exceptions[0]
            assert isinstance(exc, BadFrame)
            log.warning("verify_worker.lost", slot=slot, pid=proc.pid, reason=exc.detail)
            raise exc from None
        finally:
            self._live.pop(slot, None)
            for items, _ in worker.in_flight.values():
                self._here(items)  # nothing is lost: verified here instead
            worker.in_flight.clear()
            await _stop(proc)

    async def _read(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        out = worker.proc.stdout
        while True:
            try:
                n = framing.frame_length(await out.readexactly(framing.HEADER.size))
                value = framing.decode(await out.readexactly(n))
            except asyncio.IncompleteReadError as exc:
                raise BadFrame(f"verify worker {worker.proc.pid} ended") from exc
            seq, blob = framing.parse_answer(value)
            items = worker.answered(seq)
            if items is None:
                raise BadFrame("an answer to no request")
            self._settle(items, blob)

    async def _watch(self, worker: _Worker) -> None:
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            oldest = min((t for _, t in worker.in_flight.values()), default=None)
            if oldest is not None and time.monotonic() - oldest > self.answer_timeout_s:
                raise BadFrame(f"verify worker {worker.proc.pid} did not answer within "
                               f"{self.answer_timeout_s} s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Close its stdin (it exits), then SIGKILL by PID if it has not within the grace."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            proc.stdin.close()
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
