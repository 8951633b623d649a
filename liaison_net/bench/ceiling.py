"""This machine's limits for a node: crypto and disk rates on one core, nothing else running.

Each figure is one tight loop of the exact operation a node performs per envelope, run for
a bounded time. The crypto figures are per second of this thread's CPU time, not of the
wall clock, so the time spent waiting for a core does not count (on a shared machine the
neighbours still slow the Python part more than libsodium's, through the caches):
verifying an Ed25519 signature over a 1 KiB envelope (raw libsodium, and through our
decode + verify, and the ratio of the two, measured in alternating slices and taken as
the median slice's), opening a sealed box (what an officer's client does per envelope).
The disk figures are wall-clock rates (a commit's cost is its wait for fsync): committing
to SQLite in WAL with synchronous=FULL (the node's settings), one row per commit and in
batches, and one SQL statement's round trip with and without aiosqlite's thread hop. And
the floors a node's latency and catch-up stand on (issue 16's budget): one fsync'd
single-row commit's latency p50/p99/p99.9, two in series (two databases: the origin's
commit, then the destination's, as every envelope waits for), and the CPU a stored row
costs in batched commits (pages, the checkpoint's second write, the fsync's kernel work).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import nacl.signing

from liaison_net.bench.workload import (
    RECIPIENT,
    SENDER,
    bench_tag,
    now_ms,
    percentile,
    rounded,
)
from liaison_net.core import crypto, sealing
from liaison_net.core.envelope import signed_message
from liaison_net.core.limits import HOUR_MS

ROW = os.urandom(1668)  # the size of a sealed 1 KiB envelope on the wire
#: Bound on the commits timed per latency figure.
MAX_COMMITS = 20_000


def _rate(op: Callable[[int], int], seconds: float) -> float:
    """Call ``op(i)`` (which returns how many units it did) for about ``seconds``."""
    done, i = 0, 0
    start = time.perf_counter()
    while True:
        done += op(i)
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _cpu_slice(op: Callable[[int], int], seconds: float) -> tuple[int, float]:
    """Call ``op(i)`` for about ``seconds`` of this thread's CPU time (bounded by four times
    that in wall time, for a starved thread); how many units it did and the CPU it took.
    Thread CPU time counts only what this thread ran: neither other processes nor the time
    this thread waited for a core, which is what made wall-clock figures move 20 % between
    runs minutes apart on a shared machine."""
    done, i = 0, 0
    wall_end = time.perf_counter() + 4 * seconds
    start = time.thread_time()
    while True:
        done += op(i)
        i += 1
        used = time.thread_time() - start
        if used >= seconds or time.perf_counter() >= wall_end:
            return done, max(used, 1e-9)


def cpu_rate(op: Callable[[int], int], seconds: float) -> float:
    """Units of ``op`` per second of CPU time: one core's rate with that core to itself."""
    done, used = _cpu_slice(op, seconds)
    return done / used


def cpu_cost_x(base: Callable[[int], int], other: Callable[[int], int], seconds: float,
               slices: int = 9) -> float:
    """How many times ``base``'s CPU per unit ``other`` takes: ``slices`` alternating pairs
    sharing ``seconds``, the median pair's ratio (caches, clock frequency and the
    neighbours' memory traffic then weigh on both sides alike)."""
    ratios = []
    for _ in range(slices):
        base_done, base_used = _cpu_slice(base, seconds / (2 * slices))
        other_done, other_used = _cpu_slice(other, seconds / (2 * slices))
        ratios.append((other_used / max(other_done, 1)) / (base_used / max(base_done, 1)))
    return sorted(ratios)[len(ratios) // 2]


def _sqlite(path: Path) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE envelopes (id BLOB PRIMARY KEY, raw BLOB NOT NULL) WITHOUT ROWID")
    return db


def _batched(db: sqlite3.Connection, rows: int) -> Callable[[int], int]:
    def op(_i: int) -> int:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO envelopes VALUES (?, ?)",
                       [(os.urandom(16), ROW) for _ in range(rows)])
        db.execute("COMMIT")
        return rows
    return op


def commit_latencies(dbs: list[sqlite3.Connection], seconds: float,
                     limit: int = MAX_COMMITS) -> list[float]:
    """Milliseconds of one single-row fsync'd commit in each of ``dbs``, one after the
    other (two: an envelope's two commits in series), timed together, for about
    ``seconds`` and at most ``limit`` times."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while len(out) < limit and time.perf_counter() < end:
        start = time.perf_counter_ns()
        for db in dbs:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO envelopes VALUES (?, ?)", (os.urandom(16), ROW))
            db.execute("COMMIT")
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def _latency_figures(name: str, latencies: list[float]) -> dict[str, Any]:
    return {f"{name}_p50_ms": rounded(percentile(latencies, 50), 2),
            f"{name}_p99_ms": rounded(percentile(latencies, 99), 2),
            f"{name}_p999_ms": rounded(percentile(latencies, 99.9), 2),
            f"{name}_count": len(latencies)}


def batched_cpu_us_per_row(db: sqlite3.Connection, seconds: float) -> float:
    """This thread's CPU per row stored in commits of 256 (SQLite runs in the calling
    thread: its page writes and the fsync's system time count, the wait for it does not)."""
    done, used = _cpu_slice(_batched(db, 256), seconds)
    return used * 1e6 / max(done, 1)


async def _aiosqlite_rate(path: Path, seconds: float) -> float:
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("BEGIN IMMEDIATE")
        done = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await db.execute("INSERT INTO envelopes VALUES (?, ?)", (os.urandom(16), ROW))
            done += 1
        elapsed = time.perf_counter() - start
        await db.execute("ROLLBACK")
    return done / elapsed


def measure(workdir: Path, *, seconds: float) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    signer = crypto.generate_signing_key()
    recipient = crypto.generate_encryption_key()
    now = now_ms()
    envelopes = [sealing.seal(sender=SENDER, sender_key=signer,
                              recipients=[sealing.RecipientKey(RECIPIENT, recipient.public)],
                              tag=bench_tag("nl"), plaintext=os.urandom(1024), now=now,
                              expires=now + HOUR_MS) for _ in range(64)]
    raws = [e.to_bytes() for e in envelopes]
    messages = [signed_message(e.header_bytes, e.body_bytes) for e in envelopes]
    signatures = [e.signature for e in envelopes]
    verify_key = nacl.signing.VerifyKey(signer.public)
    signer_key = sealing.SignerKey(SENDER, signer.public)
    wrapped = [e.body.wraps[0] for e in envelopes]

    def raw_verify(i: int) -> int:
        return bool(verify_key.verify(messages[i % 64], signatures[i % 64]))

    def envelope_verify(i: int) -> int:
        return bool(sealing.verify(raws[i % 64], lambda _k: signer_key, now=now))

    figures: dict[str, Any] = {"seconds_per_figure": seconds}
    figures["ed25519_verify_per_s"] = round(cpu_rate(raw_verify, seconds))
    figures["envelope_verify_per_s"] = round(cpu_rate(envelope_verify, seconds))
    # What decoding adds to the signature check: 1.0 would be a free decode (issue 16).
    figures["envelope_verify_cost_x"] = round(
        cpu_cost_x(raw_verify, envelope_verify, seconds), 2)
    figures["sealed_box_open_per_s"] = round(cpu_rate(
        lambda i: bool(crypto.unwrap_key(recipient, wrapped[i % 64])), seconds))
    path = workdir / "ceiling.sqlite3"
    db = _sqlite(path)
    try:
        figures["sqlite_batched_rows_per_s"] = round(_rate(_batched(db, 256), seconds))
        figures["sqlite_commits_per_s"] = round(_rate(_batched(db, 1), seconds))
        figures["sqlite_batched_cpu_us_per_row"] = round(batched_cpu_us_per_row(db, seconds), 1)
        second = _sqlite(workdir / "ceiling-2.sqlite3")
        try:
            figures.update(_latency_figures("sqlite_commit",
                                            commit_latencies([db], 2 * seconds)))
            figures.update(_latency_figures("sqlite_two_commits",
                                            commit_latencies([db, second], 2 * seconds)))
        finally:
            second.close()
        db.execute("BEGIN IMMEDIATE")
        figures["sqlite_statements_per_s"] = round(_rate(
            lambda _i: db.execute("INSERT INTO envelopes VALUES (?, ?)",
                                  (os.urandom(16), ROW)).rowcount, seconds))
        db.execute("ROLLBACK")
    finally:
        db.close()
    figures["aiosqlite_statements_per_s"] = round(asyncio.run(_aiosqlite_rate(path, seconds)))
    figures["sqlite_batch_rows"] = 256
    for file in (path, workdir / "ceiling-2.sqlite3"):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{file}{suffix}").unlink()
    return figures
