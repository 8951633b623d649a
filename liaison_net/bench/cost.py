"""What a scenario costs each broker process: CPU time, peak memory and bytes on disk.

Read from ``/proc`` and the file system just before a scenario starts and just after its
last envelope arrived, for the origin and for the destination, and divided by the envelopes
the origin accepted (issue 16: "CPU microseconds per envelope per node, and bytes on disk
per envelope"):

* **CPU**: ``utime + stime`` of the process (all its threads), or of its whole process
  group for a baseline broker that runs under a start script (RabbitMQ's Erlang VM). It
  counts *everything* the process did meanwhile, background loops included: at a light
  load that is what an envelope really costs. Clock ticks (usually 10 ms) bound its
  resolution. A process restarted by the scenario (outage, crash) has no figure: its
  counters began again.
* **Peak RSS**: ``VmHWM`` at the end, the high-water mark since the process started.
* **Disk**: growth of the broker's state on disk, against the average envelope's size.
  For our nodes it is the database's pages as SQLite counts them (``page_count x
  page_size`` through a read-only connection, so pages still only in the WAL count too):
  the WAL file itself is reused after a checkpoint and deleted at a clean close, so the
  growth of database file + WAL file (also recorded, ``{role}_files_bytes_per_envelope``)
  swings by its few MB whatever the envelopes did. A baseline's figure is the growth of
  its state directory.

Beside the two brokers, ``whole`` counts the rest of the machine over the same window (the
whole machine's budget: issue 16's targets are rates on this machine's cores, shared by
everything): the bench's own process (the load generator: its submitting clients), the
sink process that watches the destination, and the machine's CPU use from ``/proc/stat``
as a share of all its cores; what the machine spent beyond the processes we count
(``others``) is the kernel's threads, other users' processes and the noise of a shared
machine.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liaison_net.bench.workload import rounded
from liaison_net.store import observe

ROLES = ("origin", "destination")
#: Bound on the process groups walked (``/proc`` entries read) per snapshot.
MAX_PROCESSES = 10_000


@dataclass(frozen=True)
class Probe:
    """Where to look at one broker process: its PID (None while down), whether to count its
    whole process group, and the files or directories that hold its state."""

    pid: int | None
    group: bool
    paths: tuple[Path, ...]
    database: Path | None = None  # a SQLite database among ``paths``
    #: The other workers of the same node (several `node serve` on one database): their
    #: CPU and peak RSS are added to ``pid``'s, so a figure is the node's, not one process's.
    workers: tuple[int, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    pid: int | None
    cpu_s: float | None
    disk_bytes: int
    database_bytes: int | None = None


def _ticks() -> int:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return int(os.sysconf("SC_CLK_TCK"))
    return 100


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _group(pid: int) -> list[int]:
    """The PIDs of ``pid``'s process group (the leader's group: start_new_session)."""
    members = []
    with contextlib.suppress(OSError):
        for n, entry in enumerate(os.scandir("/proc")):
            if n >= MAX_PROCESSES:
                break
            if entry.name.isdigit():
                fields = _stat(int(entry.name))
                # After the name: state, ppid, pgrp, ...
                if fields is not None and len(fields) > 2 and fields[2] == str(pid):
                    members.append(int(entry.name))
    return members or [pid]


def cpu_seconds(pid: int, *, group: bool = False) -> float | None:
    """User + system CPU seconds of the process (or its group); None if it is gone."""
    total, seen = 0, False
    for member in _group(pid) if group else [pid]:
        fields = _stat(member)
        # utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        if fields is not None and len(fields) > 13:
            total += int(fields[11]) + int(fields[12])
            seen = True
    return total / _ticks() if seen else None


def peak_rss_kib(pid: int, *, group: bool = False) -> int | None:
    """VmHWM in KiB (summed over the group); None if the process is gone."""
    total, seen = 0, False
    for member in _group(pid) if group else [pid]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{member}/status").read_text(encoding="ascii").splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
                    seen = True
    return total if seen else None


def disk_bytes(paths: tuple[Path, ...]) -> int:
    """Bytes of the files, and of every file under the directories (missing: 0)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_dir():
                for n, file in enumerate(path.rglob("*")):
                    if n >= MAX_PROCESSES * 10:
                        break
                    with contextlib.suppress(OSError):
                        if file.is_file():
                            total += file.stat().st_size
            else:
                total += path.stat().st_size
    return total


def database_bytes(path: Path) -> int | None:
    """page_count x page_size of a SQLite database (WAL pages included); None if unreadable."""
    try:
        return observe.database_bytes(path)
    except observe.ReadError:
        return None


@dataclass(frozen=True)
class MachineTicks:
    """The machine's CPU time so far, in clock ticks summed over all its cores (the
    ``cpu`` line of ``/proc/stat``): busy (user, nice, system, irq, softirq, steal),
    waiting for the disk (iowait, an idle core with I/O pending) and in all."""

    busy: int
    iowait: int
    total: int


def machine_ticks() -> MachineTicks | None:
    """The ``cpu`` line of ``/proc/stat``; None where there is none (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            first = stat.readline().split()
    except OSError:
        return None
    if len(first) < 9 or first[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user already).
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    busy = user + nice + system + irq + softirq + steal
    return MachineTicks(busy, iowait, busy + idle + iowait)


@dataclass(frozen=True)
class Window:
    """What ``whole`` reads at each end of a scenario, beside the brokers' snapshots: the
    bench process's CPU seconds (``time.process_time``: all its threads), the sinks' CPU
    seconds so far (None: unknown), and the machine's ticks."""

    bench_s: float
    sink_s: float | None
    machine: MachineTicks | None


def window(sink_s: float | None) -> Window:
    return Window(time.process_time(), sink_s, machine_ticks())


def whole(start: Window, end: Window, nodes_us: list[float | None], *, envelopes: int,
          prefix: str = "") -> dict[str, Any]:
    """The machine's budget over a window: ``bench_``, ``sink_`` and ``all_cpu_us_per_
    envelope`` (``nodes_us``, the brokers' figures, plus the bench and the sink; None if
    any part is unknown, a partial sum would flatter), ``machine_busy_pct`` and
    ``machine_iowait_pct`` (of all cores), ``machine_cores``, ``machine_cpu_us_per_
    envelope`` (everything the machine ran) and ``others_cpu_us_per_envelope`` (the
    machine less what ``all`` counted)."""

    def per_envelope(seconds: float | None) -> float | None:
        return max(0.0, seconds) * 1e6 / envelopes if seconds is not None and envelopes \
            else None

    bench = per_envelope(end.bench_s - start.bench_s)
    sink = per_envelope(end.sink_s - start.sink_s
                        if end.sink_s is not None and start.sink_s is not None else None)
    counted = _summed([*nodes_us, bench, sink]) if envelopes else None
    busy_pct = iowait_pct = machine = others = None
    if start.machine is not None and end.machine is not None \
            and end.machine.total > start.machine.total:
        ticks = end.machine.total - start.machine.total
        busy = end.machine.busy - start.machine.busy
        busy_pct = 100.0 * busy / ticks
        iowait_pct = 100.0 * (end.machine.iowait - start.machine.iowait) / ticks
        machine = per_envelope(busy / _ticks())
        if machine is not None and counted is not None:
            others = max(0.0, machine - counted)
    return {f"{prefix}bench_cpu_us_per_envelope": rounded(bench, 0),
            f"{prefix}sink_cpu_us_per_envelope": rounded(sink, 0),
            f"{prefix}all_cpu_us_per_envelope": rounded(counted, 0),
            f"{prefix}machine_cpu_us_per_envelope": rounded(machine, 0),
            f"{prefix}others_cpu_us_per_envelope": rounded(others, 0),
            f"{prefix}machine_busy_pct": rounded(busy_pct, 1),
            f"{prefix}machine_iowait_pct": rounded(iowait_pct, 1),
            f"{prefix}machine_cores": os.cpu_count()}


def _summed(values: list[float | None]) -> float | None:
    """The sum, or None if any process is gone (a partial sum would understate it)."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def snapshot(probe: Probe) -> Snapshot:
    cpu = _summed([cpu_seconds(pid, group=probe.group) for pid in (probe.pid, *probe.workers)]
                  ) if probe.pid is not None else None
    db = database_bytes(probe.database) if probe.database is not None else None
    return Snapshot(probe.pid, cpu, disk_bytes(probe.paths), db)


def figures(before: dict[str, Snapshot], probes: dict[str, Probe], *, envelopes: int,
            envelope_bytes: float) -> dict[str, Any]:
    """``{role}_cpu_us_per_envelope``, ``{role}_peak_rss_mb``, ``{role}_disk_bytes_per_
    envelope`` and ``{role}_disk_x_envelope`` (the disk figure over ``envelope_bytes``)."""
    out: dict[str, Any] = {"envelope_bytes": round(envelope_bytes)}
    for role, probe in probes.items():
        start = before.get(role)
        end = snapshot(probe)
        cpu = None
        if envelopes and start is not None and start.pid == end.pid \
                and start.cpu_s is not None and end.cpu_s is not None:
            cpu = max(0.0, end.cpu_s - start.cpu_s) * 1e6 / envelopes
        out[f"{role}_cpu_us_per_envelope"] = rounded(cpu, 0)
        peak = _summed([peak_rss_kib(pid, group=probe.group)
                        for pid in (probe.pid, *probe.workers)]) \
            if probe.pid is not None else None
        out[f"{role}_peak_rss_mb"] = rounded(peak / 1024 if peak is not None else None, 1)
        disk = files = None
        if envelopes and start is not None and probe.paths:  # none: not its files (PG)
            # Growth below zero is a purge or a WAL deleted at a clean close, not this
            # scenario's envelopes.
            files = max(0, end.disk_bytes - start.disk_bytes) / envelopes
            disk = files
            if start.database_bytes is not None and end.database_bytes is not None:
                disk = max(0, end.database_bytes - start.database_bytes) / envelopes
        out[f"{role}_disk_bytes_per_envelope"] = rounded(disk, 0)
        out[f"{role}_files_bytes_per_envelope"] = rounded(files, 0)
        out[f"{role}_disk_x_envelope"] = rounded(
            disk / envelope_bytes if disk is not None and envelope_bytes else None, 2)
    return out
