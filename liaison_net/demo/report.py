"""What the demo records, how it shows progress (rich), and the summary it ends with.

The scenario fills an ``Outcome``: one ``Delivery`` per (envelope, recipient), one ``Refusal``
per refused attempt, and one ``Check`` per thing the story expects. The exit code is 0
only if every check passed. ``--json`` prints ``summary()`` and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

SIGNALS_NOT_BUILT = ("early-warning signals (kind `signal`, subject pseudonyms, duty-desk "
                     "fan-out) are not built yet; the story leaves their step empty")


@dataclass
class Delivery:
    envelope: str  # id text
    alert: str  # the story's label, e.g. "A1 Benelux-only"
    sender: str
    recipient: str
    precedence: str
    tlp: str
    handling: str
    share_with: list[str]
    hop: str = "-"  # the origin node's hop state towards the recipient's node
    delivered: bool = False  # seen in the recipient's inbox
    read: bool = False  # verified, policy-checked and decrypted on the recipient's side
    content_ok: bool = False  # decrypted content equals what the sender sealed
    acked: bool = False  # the recipient's node records the acknowledgement
    latency_ms: int | None = None  # submit -> seen in the inbox (upper bound, polled)


@dataclass
class Refusal:
    alert: str
    sender: str
    recipient: str
    layer: str  # "client" (sender's machine) or "node:<id>"
    code: str
    http_status: int | None
    detail: str


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Outcome:
    deliveries: list[Delivery] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    audit: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def counts(self) -> dict[str, int]:
        d = self.deliveries
        de_nw = [r for r in self.refusals if r.recipient.startswith("de-nw/")]
        return {
            "envelopes_sent": len({x.envelope for x in d}),
            "expected_deliveries": len(d),
            "delivered": sum(x.delivered for x in d),
            "read": sum(x.read for x in d),
            "acknowledged": sum(x.acked for x in d),
            "delivered_to_de_nw": sum(x.delivered for x in d if x.recipient.startswith("de-nw/")),
            "green_delivered_to_de_nw": sum(x.delivered for x in d if x.tlp == "GREEN"
                                            and x.recipient.startswith("de-nw/")),
            "benelux_only_delivered_to_de_nw": sum(
                x.delivered for x in d
                if x.recipient.startswith("de-nw/") and "de-nw" not in x.share_with),
            "flash_delivered": sum(x.delivered for x in d if x.precedence == "flash"),
            "refused": len(self.refusals),
            "refused_for_de_nw": len(de_nw),
            "refused_for_de_nw_by_client": sum(r.layer == "client" for r in de_nw),
            "refused_for_de_nw_by_node": sum(r.layer.startswith("node:") for r in de_nw),
            "checks_failed": sum(not c.ok for c in self.checks),
        }

    def envelopes(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for x in self.deliveries:
            row = rows.setdefault(x.envelope, {
                "id": x.envelope, "alert": x.alert, "from": x.sender,
                "precedence": x.precedence, "tlp": x.tlp, "handling": x.handling,
                "share_with": x.share_with, "deliveries": []})
            row["deliveries"].append({"to": x.recipient, "hop": x.hop, "delivered": x.delivered,
                                      "read": x.read, "content_ok": x.content_ok,
                                      "acked": x.acked, "latency_ms": x.latency_ms})
        return list(rows.values())


def summary(outcome: Outcome, *, root: str, kept: bool, duration_s: float,
            nodes: dict[str, dict[str, Any]], officers: dict[str, dict[str, Any]],
            pids: list[int], error: str | None, commands: list[str]) -> dict[str, Any]:
    return {
        "ok": outcome.ok and error is None,
        "error": error,
        "dir": root,
        "kept": kept,
        "duration_s": round(duration_s, 2),
        "pids": pids,
        "nodes": nodes,
        "officers": officers,
        "counts": outcome.counts(),
        "envelopes": outcome.envelopes(),
        "refusals": [asdict(r) for r in outcome.refusals],
        "checks": [asdict(c) for c in outcome.checks],
        "audit": outcome.audit,
        "signals": {"status": "not_built", "detail": SIGNALS_NOT_BUILT},
        "commands": commands,
    }


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True)


# --- rich output ------------------------------------------------------------------------------


class Progress:
    """One status line per step on the terminal; silent with ``--json``."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(highlight=False, quiet=quiet)
        if not self.console.is_terminal:
            # Piped or logged (CI): rich would assume 80 columns and wrap every table row.
            self.console.width = 120

    def title(self, text: str) -> None:
        self.console.rule(f"[bold]{escape(text)}")

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[list[str]]:
        """``with progress.step("...") as notes:``; append to ``notes`` to add detail."""
        notes: list[str] = []
        start = time.monotonic()
        try:
            with self.console.status(escape(text) + " ..."):
                yield notes
        except BaseException as exc:
            reason = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                      else str(exc) or type(exc).__name__)
            self.console.print(f"[red]✗[/] {escape(text)}: [red]{escape(reason[:300])}[/]")
            raise
        elapsed = time.monotonic() - start
        extra = f": {'; '.join(notes)}" if notes else ""
        self.console.print(f"[green]✓[/] {escape(text)}{escape(extra)} "
                           f"[dim]({elapsed:.1f} s)[/]")

    def note(self, text: str, *, style: str = "dim") -> None:
        self.console.print(f"  [{style}]{escape(text)}[/]")

    def skipped(self, text: str) -> None:
        self.console.print(f"[yellow]-[/] {escape(text)}")

    def refused(self, refusal: Refusal) -> None:
        status = f"HTTP {refusal.http_status} " if refusal.http_status else ""
        self.console.print(f"  [yellow]refused[/] by {escape(refusal.layer)}: "
                           f"{status}[bold]{escape(refusal.code)}[/] "
                           f"[dim]({escape(refusal.detail[:120])})[/]")

    def tables(self, outcome: Outcome) -> None:
        if not outcome.deliveries and not outcome.refusals:
            return
        table = Table(title="Deliveries", title_justify="left", box=box.SIMPLE_HEAD,
                      padding=(0, 1, 0, 0), show_edge=False)
        for name in ("envelope", "alert", "from", "to", "prec", "tag", "share with",
                     "hop", "read", "acked"):
            table.add_column(name, no_wrap=True)
        for x in outcome.deliveries:
            table.add_row("…" + x.envelope[-6:], x.alert, x.sender, x.recipient, x.precedence,
                          f"{x.tlp} {x.handling}", ",".join(x.share_with),
                          _state(x.hop, x.hop in ("delivered", "local")),
                          _yes(x.read and x.content_ok), _yes(x.acked))
        self.console.print(table)
        self.console.print()
        if outcome.refusals:
            refusals = Table(title="Refusals", title_justify="left", box=box.SIMPLE_HEAD,
                             padding=(0, 1, 0, 0), show_edge=False)
            for name in ("alert", "from", "to", "refused by", "HTTP", "code"):
                refusals.add_column(name, no_wrap=True)
            for r in outcome.refusals:
                refusals.add_row(r.alert, r.sender, r.recipient, r.layer,
                                 str(r.http_status or "-"), f"[yellow]{escape(r.code)}[/]")
            self.console.print(refusals)
            self.console.print()

    def checks(self, outcome: Outcome) -> None:
        for c in outcome.checks:
            mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
            detail = f" [dim]({escape(c.detail)})[/]" if c.detail else ""
            self.console.print(f"{mark} {escape(c.name)}{detail}")


    def finish(self, outcome: Outcome, summary: dict[str, Any]) -> None:
        """The tables, the checks, one summary line, and what is left running (if anything)."""
        c = self.console
        c.print()
        self.tables(outcome)
        self.checks(outcome)
        counts = summary["counts"]
        verdict = ("[green bold]Demo OK[/]" if summary["ok"]
                   else "[red bold]Demo INTERRUPTED[/]" if summary["error"] == "interrupted"
                   else "[red bold]Demo FAILED[/]")
        c.print(f"\n{verdict} in {summary['duration_s']} s: {counts['delivered']}/"
                f"{counts['expected_deliveries']} delivered, {counts['acknowledged']} "
                f"acknowledged, {counts['refused_for_de_nw']} refusals for DE-NW "
                f"(client {counts['refused_for_de_nw_by_client']}, node "
                f"{counts['refused_for_de_nw_by_node']})")
        self.skipped(SIGNALS_NOT_BUILT)
        if summary["error"]:
            c.print(f"[red]error:[/] {escape(str(summary['error']))}")
        if summary.get("traceback"):
            c.print(escape(str(summary["traceback"])), style="dim")
        pids = " ".join(str(p) for p in summary["pids"]) or "-"
        if summary["kept"]:
            c.print(f"\nThe network is still running (node PIDs {pids}). To use it:")
            for command in summary["commands"]:
                c.print(f"  {escape(command)}", soft_wrap=True)
            return
        c.print(f"Stopped every node process this demo started (PIDs {pids}).")
        if summary["dir_removed"]:
            c.print("Removed the temporary demo directory (run with --dir DIR to keep it).")
        else:
            c.print(f"Configs, logs and keystores are in {escape(str(summary['dir']))}")


def _yes(value: bool) -> str:
    return "[green]yes[/]" if value else "[red]no[/]"


def _state(text: str, good: bool) -> str:
    return f"[green]{escape(text)}[/]" if good else f"[yellow]{escape(text)}[/]"
