"""The soak's figures for people (a table) and scripts (JSON), and its live progress.

Operators watch long runs: on a terminal one status line is redrawn every second under the
lines that stay (phases, each fault); in a file or pipe, the status is printed every
``every_s`` seconds instead, so a log of a 20-minute run stays readable.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from liaison_net.chaos.soak import Ui

#: (figure, label) in the order the table shows them.
ROWS = (
    ("kills", "nodes killed (SIGKILL) and restarted"),
    ("partitions", "links cut and healed"),
    ("submitted", "envelopes submitted"),
    ("accepted", "answered accepted"),
    ("refused", "refused by the origin (as built)"),
    ("unanswered", "no answer (origin down past the officer's patience)"),
    ("unanswered_held", "  of which the origin had stored (owed)"),
    ("accepted_while_destination_down", "accepted while a recipient's node was down"),
    ("accepted_while_link_cut", "accepted while the link to a recipient was cut"),
    ("submitted_while_origin_down", "submissions that met their origin down"),
    ("expected_copies", "inbox copies owed"),
    ("delivered_copies", "inbox copies found"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("misdelivered", "in an inbox not addressed"),
    ("refused_stored", "refused yet stored"),
    ("policy_violations", "accepted although the tag forbids it"),
    ("unexpected_refusals", "refused for another reason"),
    ("server_errors", "5xx answers"),
    ("effects_owed", "effects owed (evidence, notices, due times, receipts)"),
    ("effects_found", "effects found where they belong"),
    ("effects_missing", "effects missing"),
    ("effects_twice", "effects found twice"),
    ("effects_unowed", "effects found that nothing owes"),
    ("effects_unreadable", "evidence or notices that do not verify"),
    ("restart_to_listen_s_max", "slowest restart to listening (s)"),
    ("max_rss_mb", "max RSS of any node (MB)"),
    ("chaos_s", "chaos phase (s)"),
    ("drain_s", "heal -> all delivered (s)"),
    ("effects_wait_s", "then until the effects stopped changing (s)"),
    ("duration_s", "whole run (s)"),
)
MUST_BE_ZERO = {"lost", "duplicated", "misdelivered", "refused_stored", "policy_violations",
                "unexpected_refusals", "server_errors", "effects_missing", "effects_twice",
                "effects_unowed", "effects_unreadable"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def table(doc: dict[str, Any]) -> Table:
    figures = doc["figures"]
    verdict = "[green]OK[/green]" if doc["ok"] else "[red]FAILED[/red]"
    t = Table(title=f"liaison chaos, seed {doc['seed']}: {verdict}")
    t.add_column("figure")
    t.add_column("value", justify="right", style="cyan")
    for key, label in ROWS:
        value = figures.get(key)
        text = _fmt(value)
        if key in MUST_BE_ZERO and value:
            text = f"[red]{text}[/red]"
        t.add_row(label, text)
        if key == "effects_twice":
            for kind, n in figures.get("effects_by_kind", {}).items():
                bad = n["missing"] + n["twice"]
                t.add_row(f"  {kind}: owed, found, missing, twice",
                          ("[red]" if bad else "") + f"{_fmt(n['owed'])}, {_fmt(n['found'])}, "
                          f"{_fmt(n['missing'])}, {_fmt(n['twice'])}" + ("[/red]" if bad else ""))
    for nid, node in doc["nodes"].items():
        chain = "verifies" if node["audit_ok"] else "[red]BROKEN[/red]"
        t.add_row(f"node {nid}: max RSS (MB), kills, audit chain",
                  f"{_fmt(node['max_rss_mb'])}, {node['kills']}, {chain} "
                  f"({_fmt(node['audit_entries'])} entries)")
    return t


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = [f"failure: {text}" for text in doc["failures"]]
    machine = doc["machine"]
    lines.append(f"machine: {machine['cpu_count']} x {machine['cpu_model']}, "
                 f"{machine['memory_mb']} MB, load at start {machine['load_average_at_start']}")
    lines.append(f"work directory: {doc['workdir']}")
    return lines


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str) + "\n"


class ConsoleUi(Ui):
    """Notes as lines; the status live on a terminal, else every ``every_s`` seconds."""

    def __init__(self, console: Console, *, every_s: float = 10.0) -> None:
        self.console = console
        self.every_s = every_s
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> ConsoleUi:
        if self.console.is_terminal:
            self._live = Live(Text(""), console=self.console, refresh_per_second=2,
                              transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}", highlight=False)

    def status(self, text: str) -> None:
        if self._live is not None:
            self._live.update(Text(text, style="bold"))
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.note(text)
