"""What the demo records, how it shows progress (rich), and the summary it ends with.

The scenario fills an ``Outcome``: one ``Delivery`` per (envelope, recipient), alerts and
signals alike, one ``Refusal`` per refused attempt, one ``SignalRecord`` per signal raised,
one ``Notice`` per signed node notice read (signal acknowledgements and matches), and one
``Check`` per thing the story expects. The exit code is 0 only if every check passed.
``--json`` prints ``summary()`` and nothing else.
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


@dataclass
class Delivery:
    envelope: str  # id text
    alert: str  # the story's label, e.g. "A1 Benelux", "S1 signal"
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
    kind: str = "message"  # the envelope kind: "message" (an alert) or "signal"


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
class SignalRecord:
    """An early-warning signal the story raised (what its header and payload say)."""

    label: str  # "S1 signal"
    id: str
    sender: str
    desks: list[str]
    category: str
    severity: str
    region: str
    share_with: list[str]
    pseudonyms: int  # subject pseudonyms in the annex (one per network key)


@dataclass
class Notice:
    """A signed node notice an officer's client verified and opened."""

    id: str
    type: str  # "signal-ack" or "signal-match"
    sender: str  # the node principal that signed it, e.g. "be/node"
    recipient: str
    about: list[str]  # the signal ids it names
    detail: str
    ok: bool  # signed by the node it should be, and says what it should


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
    signals: list[SignalRecord] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    signal_checks: list[Check] = field(default_factory=list)  # also in ``checks``
    signals_checked: bool = False  # the story got to the end of its signal checks
    de_nw_desk_signals: list[str] | None = None  # signal ids in DE-NW's desk inbox
    match_notices: dict[str, int] = field(default_factory=dict)  # owner -> match notices
    names_in_clear: list[str] = field(default_factory=list)  # subject identifiers found
    names_scanned: int = 0  # node files and envelopes searched for them

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def signal_check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.check(name, ok, detail)
        self.signal_checks.append(self.checks[-1])
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
                "id": x.envelope, "alert": x.alert, "kind": x.kind, "from": x.sender,
                "precedence": x.precedence, "tlp": x.tlp, "handling": x.handling,
                "share_with": x.share_with, "deliveries": []})
            row["deliveries"].append({"to": x.recipient, "hop": x.hop, "delivered": x.delivered,
                                      "read": x.read, "content_ok": x.content_ok,
                                      "acked": x.acked, "latency_ms": x.latency_ms})
        return list(rows.values())

    def signals_summary(self) -> dict[str, Any]:
        """The signal part of the story, for the JSON summary and the last lines."""
        if not self.signals:
            return {"status": "not_run", "raised": 0}
        labels = {s.label for s in self.signals}
        rows = [d for d in self.deliveries if d.kind == "signal"]
        acks = [n for n in self.notices if n.type == "signal-ack" and n.ok]
        matches = [n for n in self.notices if n.type == "signal-match" and n.ok]

        def acknowledged(signal: SignalRecord) -> bool:
            """Every desk acknowledged it, and the sender holds each desk node's notice."""
            desks = [d for d in rows if d.envelope == signal.id]
            told = {n.sender for n in acks if n.about == [signal.id]}
            return bool(desks) and all(d.acked for d in desks) and len(told) == len(desks)

        refused = [r for r in self.refusals if r.alert in labels]
        ok = self.signals_checked and all(c.ok for c in self.signal_checks)
        return {
            "status": "ok" if ok else "failed",
            "raised": len(self.signals),
            "delivered_to_desks": sum(d.delivered for d in rows),
            "opened": sum(d.read and d.content_ok for d in rows),
            # Signals every desk acknowledged, with the sender told in a signed notice.
            "acknowledged": sum(acknowledged(s) for s in self.signals),
            "desk_acknowledgements": sum(d.acked for d in rows),
            "ack_notices": len(acks),
            "refused_for_de_nw": sum(r.recipient.startswith("de-nw/") for r in refused),
            "delivered_to_de_nw": (len(self.de_nw_desk_signals)
                                   if self.de_nw_desk_signals is not None else None),
            # Pairs of signals found to concern the same person, each told to both owners.
            "matches": len({tuple(n.about) for n in matches}),
            "match_notices": self.match_notices,
            "names_in_clear": len(self.names_in_clear),
            "names_found": self.names_in_clear,
            "files_and_envelopes_searched": self.names_scanned,
            "items": [asdict(s) for s in self.signals],
            "notices": [asdict(n) for n in self.notices],
        }


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
        "signals": outcome.signals_summary(),
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
        if outcome.notices:
            notices = Table(title="Signal notices (signed by a node, verified and opened by "
                                  "the officer's client)", title_justify="left",
                            box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
            for name in ("notice", "type", "from", "to", "says", "ok"):
                notices.add_column(name, no_wrap=True)
            for n in outcome.notices:
                notices.add_row("…" + n.id[-6:], n.type, n.sender, n.recipient, n.detail,
                                _yes(n.ok))
            self.console.print(notices)
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
        signals = summary["signals"]
        if signals.get("raised"):
            matches = signals["matches"]
            c.print(f"Signals: {signals['raised']} raised, {signals['acknowledged']} "
                    f"acknowledged by every desk (senders told), "
                    f"{signals['refused_for_de_nw']} refusals for DE-NW's desk, "
                    f"{matches} {'match' if matches == 1 else 'matches'} (a notice to each "
                    f"owner), {signals['names_in_clear']} names in clear on the nodes")
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
