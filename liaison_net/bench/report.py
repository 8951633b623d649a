"""Figures in, a table on screen and a JSON file out; progress lines while the bench works.

Results are ``{scenario: {system: {figure: value}}}``. A system that could not run a
scenario has ``{"unavailable": reason}`` (a baseline broker that cannot be installed) or
``{"error": text}`` (something broke) instead of figures: the bench always completes.
Ratios are ours / theirs, so above 1 is better for rates and worse for latencies and sizes.
A figure with a target from the issues also has its ratio to that target (ours / target:
below 1 meets an "at most", above 1 an "at least") and whether it is met.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from liaison_net.bench.scenarios import OURS_PG, Ui
from liaison_net.bench.workload import Progress as ProgressFn
from liaison_net.store import observe

OURS = "liaison_net"
BASELINES = ("mosquitto", "rabbitmq")
LABELS = {OURS: "liaison_net", OURS_PG: "liaison_net (PostgreSQL)",
          "mosquitto": "Mosquitto bridge", "rabbitmq": "RabbitMQ shovel",
          "machine": "this machine"}
Results = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Row:
    scenario: str
    key: str
    label: str
    target: str = ""
    ratio: bool = True  # a ratio ours/theirs means something (not for counts)


def _cost_rows(scenario: str, *, disk: bool) -> tuple[Row, ...]:
    """Per-node CPU and peak RSS (and, where the count is large enough, bytes on disk)."""
    out = []
    for role in ("origin", "destination"):
        out.append(Row(scenario, f"{role}_cpu_us_per_envelope",
                       f"{role}: CPU per envelope (µs, all the process did)"))
        if disk:
            out.append(Row(scenario, f"{role}_disk_bytes_per_envelope",
                           f"{role}: bytes on disk per envelope (database pages)"))
            out.append(Row(scenario, f"{role}_disk_x_envelope",
                           f"{role}: bytes on disk, x the envelope", "<= 1.5"))
        out.append(Row(scenario, f"{role}_peak_rss_mb", f"{role}: peak RSS (MB)"))
    return tuple(out)


def _budget_rows(scenario: str, prefix: str = "", during: str = "") -> tuple[Row, ...]:
    """The whole machine's budget (``cost.whole``): every process the scenario ran, and how
    busy the cores were (the JSON has each part: bench, sink, others, iowait)."""
    return (Row(scenario, f"{prefix}all_cpu_us_per_envelope",
                f"{during}all processes: CPU per envelope (µs; brokers, bench, sink)"),
            Row(scenario, f"{prefix}machine_busy_pct",
                f"{during}machine busy (% of all its cores)", ratio=False))


ROWS = (
    Row("light", "latency_p50_ms", "20/s: latency p50 (ms), submit -> destination inbox"),
    Row("light", "latency_p95_ms", "20/s: latency p95 (ms)"),
    Row("light", "latency_p99_ms", "20/s: latency p99 (ms), what an officer feels", "<= 10"),
    Row("light", "latency_max_ms", "20/s: latency max (ms)"),
    Row("light", "accept_p99_ms", "20/s: submit -> accepted by the origin, p99 (ms)"),
    Row("light", "live_latency_p50_ms",
        "20/s: latency p50 (ms), submit -> the recipient's live stream"),
    Row("light", "live_latency_p99_ms", "20/s: latency p99 (ms), at the live stream"),
    Row("light", "lost", "lost", "0", ratio=False),
    Row("light", "duplicated", "duplicated", "0", ratio=False),
    *_cost_rows("light", disk=False),
    *_budget_rows("light"),
    Row("light", "origin_idle_cpu_ms_per_s", "origin: CPU when idle (ms per s), before the load"),
    Row("light", "destination_idle_cpu_ms_per_s", "destination: CPU when idle (ms per s)"),
    Row("relay", "relay_per_s", "envelopes/s, submit -> destination inbox", ">= 5,000"),
    Row("relay", "accept_per_s", "accepted/s at the origin"),
    Row("relay", "latency_p50_ms", "latency p50 (ms)"),
    Row("relay", "latency_p99_ms", "latency p99 (ms)"),
    Row("relay", "lost", "lost", "0", ratio=False),
    Row("relay", "duplicated", "duplicated", "0", ratio=False),
    Row("relay", "envelope_bytes", "average envelope on the wire (bytes)", ratio=False),
    *_cost_rows("relay", disk=True),
    *_budget_rows("relay"),
    Row("relay_batched", "relay_per_s", "batch submit: envelopes/s, submit -> inbox",
        ">= 5,000"),
    Row("relay_batched", "accept_per_s", "batch submit: accepted/s at the origin"),
    Row("relay_batched", "latency_p50_ms", "batch submit: latency p50 (ms)"),
    Row("relay_batched", "latency_p99_ms", "batch submit: latency p99 (ms)"),
    Row("relay_batched", "lost", "lost", "0", ratio=False),
    Row("relay_batched", "duplicated", "duplicated", "0", ratio=False),
    *_cost_rows("relay_batched", disk=False),
    *_budget_rows("relay_batched"),
    Row("relay_stream", "relay_per_s", "submit stream: envelopes/s, submit -> inbox",
        ">= 5,000"),
    Row("relay_stream", "accept_per_s", "submit stream: accepted/s at the origin"),
    Row("relay_stream", "latency_p50_ms", "submit stream: latency p50 (ms)"),
    Row("relay_stream", "latency_p99_ms", "submit stream: latency p99 (ms)"),
    Row("relay_stream", "lost", "lost", "0", ratio=False),
    Row("relay_stream", "duplicated", "duplicated", "0", ratio=False),
    *_cost_rows("relay_stream", disk=False),
    *_budget_rows("relay_stream"),
    Row("paced", "latency_p50_ms", "latency p50 (ms)"),
    Row("paced", "latency_p99_ms", "latency p99 (ms)", "<= 5"),
    Row("paced", "latency_max_ms", "latency max (ms)"),
    Row("paced", "delivered_per_s", "delivered/s (target rate)"),
    Row("paced", "lost", "lost", "0", ratio=False),
    Row("paced", "duplicated", "duplicated", "0", ratio=False),
    *_budget_rows("paced"),
    Row("outage", "accept_per_s_while_down", "accepted/s while the destination is down"),
    Row("outage", "catch_up_per_s", "catch-up envelopes/s", ">= 5,000"),
    Row("outage", "reconnect_s", "destination back -> first arrival (s)"),
    Row("outage", "drain_s", "destination back -> all arrived (s)"),
    Row("outage", "lost", "lost", "0", ratio=False),
    Row("outage", "duplicated", "duplicated", "0", ratio=False),
    *_budget_rows("outage", "catch_up_", "catch-up: "),
    Row("crash", "accepted", "acknowledged by the origin", ratio=False),
    Row("crash", "lost", "lost (2 x SIGKILL of the destination)", "0", ratio=False),
    Row("crash", "duplicated", "duplicated", "0", ratio=False),
    Row("crash", "recovery_s", "last kill -> all arrived (s)"),
    Row("memory", "peak_rss_mb", "peak RSS (MB), origin with the batch queued", "<= 200"),
    Row("memory", "idle_rss_mb", "RSS before the load (MB)"),
    Row("memory", "queued", "envelopes queued", ratio=False),
    Row("memory", "accept_per_s", "accepted/s (one node, no relay)"),
    Row("memory", "database_mb", "database file (MB)", ratio=False),
    Row("memory", "origin_disk_bytes_per_envelope",
        "bytes on disk per queued envelope (database pages)", ratio=False),
    Row("memory", "origin_disk_x_envelope", "bytes on disk per queued envelope, x the envelope",
        "<= 1.5", ratio=False),
    Row("memory", "origin_cpu_us_per_envelope", "CPU per accepted envelope (µs)", ratio=False),
    Row("ceiling", "ed25519_verify_per_s", "Ed25519 verify/s (per CPU second)"),
    Row("ceiling", "envelope_verify_per_s", "envelope decode + verify/s (per CPU second)"),
    Row("ceiling", "envelope_verify_cost_x", "decode + verify CPU time, x raw verify", "<= 1.3",
        ratio=False),
    Row("ceiling", "sealed_box_open_per_s", "sealed-box open/s (per CPU second)"),
    Row("ceiling", "sqlite_batched_rows_per_s", "SQLite rows/s, batched commits, fsync"),
    Row("ceiling", "sqlite_commits_per_s", "SQLite fsync'd commits/s (1 row each)"),
    Row("ceiling", "sqlite_batched_cpu_us_per_row",
        "SQLite CPU per row stored, batched commits (µs)"),
    Row("ceiling", "sqlite_commit_p50_ms", "SQLite fsync'd commit (1 row): latency p50 (ms)"),
    Row("ceiling", "sqlite_commit_p99_ms", "SQLite fsync'd commit: latency p99 (ms)"),
    Row("ceiling", "sqlite_two_commits_p99_ms",
        "two fsync'd commits in series (origin, destination): p99 (ms)"),
    Row("ceiling", "sqlite_statements_per_s", "SQLite INSERTs/s in one transaction (sqlite3)"),
    Row("ceiling", "aiosqlite_statements_per_s", "the same through aiosqlite (thread hop each)"),
)


UNITS = (("_us_per_envelope", "µs"), ("_us_per_row", "µs"),
         ("_bytes_per_envelope", "bytes"), ("_bytes", "bytes"),
         ("_ms_per_s", "ms/s"), ("_per_s", "/s"), ("_ms", "ms"), ("_mb", "MB"),
         ("_x_envelope", "x"), ("_x", "x"), ("_s", "s"), ("_pct", "%"))


def unit_of(key: str) -> str:
    """The unit a figure's name ends with (``count`` for plain numbers)."""
    return next((unit for suffix, unit in UNITS if key.endswith(suffix)), "count")


def target_of(row: Row) -> tuple[str, float] | None:
    """The target as ("<=" or ">=", number); "0" is at most 0; None without a target."""
    text = row.target.replace(",", "").strip()
    if not text:
        return None
    op = text[:2] if text[:2] in ("<=", ">=") else "<="
    try:
        return op, float(text[2:] if text[:2] in ("<=", ">=") else text)
    except ValueError:
        return None


def versus_target(row: Row, value: Any) -> tuple[float | None, bool | None]:
    """(ours / target, met) for a numeric figure with a target; None where not defined."""
    goal = target_of(row)
    if goal is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None, None
    op, limit = goal
    met = value <= limit if op == "<=" else value >= limit
    return (round(value / limit, 3) if limit else None), met


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    try:
        version = metadata.version("liaison_net")
    except metadata.PackageNotFoundError:
        version = "unknown"
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_mb": memory_mb,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": observe.SQLITE_VERSION,
        "openssl": ssl.OPENSSL_VERSION,
        "liaison_net": version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other work on the machine skews every figure: the load when the bench started.
        "load_average_at_start": load,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    return str(value)


def _cell(figures: dict[str, Any] | None, key: str) -> tuple[str, float | None]:
    if figures is None:
        return "", None
    if "unavailable" in figures:
        return "[dim]not run[/dim]", None
    if "error" in figures:
        return "[red]error[/red]", None
    value = figures.get(key)
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None
    return _fmt(value), number


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return ""
    ratio = ours / theirs
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _ours_beside(by_system: dict[str, dict[str, Any]]) -> list[str]:
    """Our other runs in a scenario, printed beside the SQLite node: on PostgreSQL, and
    with several workers (``liaison_net_w2``, ``liaison_net_pg_w4``: issue 17)."""
    return [name for name in by_system
            if name == OURS_PG or name.startswith((f"{OURS}_w", f"{OURS_PG}_w"))]


def _beside_order(name: str) -> tuple[bool, int]:
    engine, _, workers = name.partition("_w")
    return engine != OURS, int(workers or 1)


def _label(name: str) -> str:
    """A system's name for people: ``liaison_net_pg_w2`` is our PostgreSQL node, 2 workers."""
    engine, _, workers = name.partition("_w")
    if workers and engine in (OURS, OURS_PG):
        return f"liaison_net ({'PostgreSQL' if engine == OURS_PG else 'SQLite'}, " \
               f"{workers} workers)"
    return LABELS.get(name, name)


def _beside_heading(name: str) -> str:
    engine, _, workers = name.partition("_w")
    where = "on PostgreSQL" if engine == OURS_PG else "on SQLite"
    return f"{where}, {workers} workers" if workers else where


def rows(results: Results) -> list[dict[str, Any]]:
    """The table as data: one entry per figure, for the JSON file."""
    out = []
    for row in ROWS:
        by_system = results.get(row.scenario)
        if not by_system:
            continue
        entry: dict[str, Any] = {"scenario": row.scenario, "figure": row.key,
                                 "label": row.label, "unit": unit_of(row.key),
                                 "target": row.target or None}
        ours_figures = by_system.get(OURS) or by_system.get("machine") or {}
        ours = ours_figures.get(row.key)
        entry["liaison_net"] = ours
        for name in _ours_beside(by_system):
            entry[name] = (by_system.get(name) or {}).get(row.key)
        if row.target:
            entry["ratio_to_target"], entry["target_met"] = versus_target(row, ours)
        for name in BASELINES:
            theirs = (by_system.get(name) or {}).get(row.key)
            entry[name] = theirs
            if row.ratio and isinstance(ours, int | float) and isinstance(theirs, int | float) \
                    and theirs:
                entry[f"ratio_{name}"] = round(ours / theirs, 3)
        out.append(entry)
    return out


def table(results: Results) -> Table:
    t = Table(title="liaison bench (x = liaison_net / baseline; vs target = liaison_net / "
                    "target)", show_lines=False)
    t.add_column("scenario", style="bold")
    t.add_column("figure")
    t.add_column("liaison_net", justify="right", style="cyan")
    beside = sorted({name for by_system in results.values()
                     for name in _ours_beside(by_system)}, key=_beside_order)
    for name in beside:
        t.add_column(_beside_heading(name), justify="right", style="cyan")
    t.add_column("Mosquitto", justify="right")
    t.add_column("x", justify="right", style="dim")
    t.add_column("RabbitMQ", justify="right")
    t.add_column("x", justify="right", style="dim")
    t.add_column("target", justify="right", style="green")
    t.add_column("vs target", justify="right")
    previous = ""
    for row in ROWS:
        by_system = results.get(row.scenario)
        if not by_system:
            continue
        ours_text, ours = _cell(by_system.get(OURS) or by_system.get("machine"), row.key)
        cells = [row.scenario if row.scenario != previous else "", row.label, ours_text]
        cells += [_cell(by_system.get(name), row.key)[0] for name in beside]
        for name in BASELINES:
            text, theirs = _cell(by_system.get(name), row.key)
            cells += [text, _ratio(ours, theirs) if row.ratio else ""]
        cells.append(row.target)
        ratio, met = versus_target(row, ours)
        cells.append("" if met is None else
                     (f"{_ratio(ratio, 1.0)} " if ratio is not None else "")
                     + ("[green]met[/green]" if met else "[red]missed[/red]"))
        t.add_row(*cells, end_section=False)
        previous = row.scenario
    return t


def notes(results: Results) -> list[str]:
    """Why a system has no figures for a scenario, one line each (one line for the
    scenarios a broker could not run at all, for the same reason)."""
    out = []
    missing: dict[tuple[str, str], list[str]] = {}
    for scenario, by_system in results.items():
        for name, figures in by_system.items():
            if "unavailable" in figures:
                missing.setdefault((name, str(figures["unavailable"])), []).append(scenario)
    for (name, reason), scenarios in missing.items():
        out.append(f"{_label(name)}: not run ({', '.join(scenarios)}): {reason}")
    for scenario, by_system in results.items():
        for name, figures in by_system.items():
            if figures.get("same_as") == "relay" and scenario == "relay_batched":
                out.append(f"relay_batched / {_label(name)}: no batch submit; "
                           "its relay figures (publishes pipelined) are shown and compared")
            if figures.get("same_as") == "relay" and scenario == "relay_stream":
                out.append(f"relay_stream / {_label(name)}: its relay is already a stream "
                           "(publishes pipelined on one connection); those figures are "
                           "shown and compared")
            if "error" in figures:
                out.append(f"{scenario} / {_label(name)}: error: {figures['error']}")
            if figures.get("not_accepted"):
                out.append(f"{scenario} / {_label(name)}: "
                           f"{figures['not_accepted']} not accepted by the origin "
                           f"(e.g. {figures.get('not_accepted_example', '?')})")
    return out


def document(results: Results, *, machine: dict[str, Any], quick: bool,
             selected: list[str], started: datetime, extra: dict[str, Any]) -> dict[str, Any]:
    finished = datetime.now(UTC)
    return {
        "tool": "liaison bench",
        "quick": quick,
        "scenarios_selected": selected,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "machine": machine,
        **extra,
        "results": results,
        "rows": rows(results),
        "notes": notes(results),
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


class ConsoleUi(Ui):
    """Progress bars on a terminal; on anything else, a line every few seconds."""

    def __init__(self, console: Console, *, every_s: float = 5.0) -> None:
        self.console = console
        self.every_s = every_s

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}", highlight=False)

    @contextlib.contextmanager
    def step(self, label: str, total: int | None) -> Iterator[ProgressFn]:
        started = time.monotonic()
        done = 0
        if self.console.is_terminal:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=self.console,
                          transient=True) as bar:
                task = bar.add_task(label, total=total)

                def update(n: int) -> None:
                    nonlocal done
                    done = n
                    bar.update(task, completed=n)

                yield update
        else:
            self.note(f"{label} ...")
            last = started

            def update(n: int) -> None:
                nonlocal done, last
                done = n
                now = time.monotonic()
                if now - last >= self.every_s:
                    last = now
                    self.note(f"{label}: {n:,}" + (f" / {total:,}" if total else ""))

            yield update
        elapsed = time.monotonic() - started
        self.note(f"{label}: done, {done:,}" + (f" / {total:,}" if total else "")
                  + f" in {elapsed:.1f} s")
