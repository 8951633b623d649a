"""Delivery evidence at the command line: `liaison status ID` per recipient (accepted,
relayed, delivered, opened, refused, expired), and the "delivered" and "opened" statements
that `liaison inbox` and `liaison read` send back to senders.

Evidence that does not verify is a warning on stderr (and ``"verified": false`` in JSON),
never a step in the table. The JSON keeps each signed statement (base64) with its signer
and key id, so it can be verified again later, away from this command.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from liaison_net.cli import officer_view as view
from liaison_net.cli import tables
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.client import evidence_trail, restrictions
from liaison_net.client.directory import Directory
from liaison_net.client.evidence_trail import CheckedEvidence, StatusReport
from liaison_net.client.keystore import Keystore
from liaison_net.client.local_cache import LocalCache
from liaison_net.client.session import InboxEntry, NodeSession
from liaison_net.core.envelope import Envelope
from liaison_net.core.evidence import Statement, Step
from liaison_net.core.evidence_batch import claimed
from liaison_net.core.ids import id_from_text, id_to_text
from liaison_net.errors import LiaisonError


def _now_ms() -> int:
    return cli_clock().now_ms()


def _warn(warnings: Sequence[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {view.safe(warning)}", err=True)


# --- sent back by the recipient's client -----------------------------------------------------


async def after_inbox(ks: Keystore, keystore_path: Path, listed: Sequence[InboxEntry], *,
                      node: NodeSession, cache: LocalCache) -> None:
    """Attest "delivered" for what `liaison inbox` just listed, over its session."""
    _warn(await evidence_trail.attest_listed(ks, keystore_path, listed, now=_now_ms(),
                                             node=node, cache=cache))


async def after_read(ks: Keystore, keystore_path: Path, envelope: Envelope,
                     directory: Directory, *, node: NodeSession, cache: LocalCache) -> None:
    """Attest "opened" (and "delivered", if not yet) for what `liaison read` just showed,
    over its session."""
    _warn(await evidence_trail.attest_opened(ks, keystore_path, envelope, directory,
                                             now=_now_ms(), node=node, cache=cache))


# --- status ----------------------------------------------------------------------------------


def show_status(ks: Keystore, envelope_id: str, *, as_json: bool,
                cache: LocalCache | None = None) -> None:
    async def go() -> tuple[StatusReport, list[restrictions.Receipt]]:
        async with NodeSession(ks, cache=cache) as node:
            report = await evidence_trail.status_report(node, ks, envelope_id, now=_now_ms())
            if report.sender not in (ks.officer, None):  # None: recalled, only a skeleton
                return report, []
            # The owner's restriction updates: who applied them, and when (signed receipts,
            # sealed for the issuer alone).
            directory = await node.directory(now=cli_clock().host_now())
            return report, await restrictions.receipts(node, ks, directory,
                                                       id_from_text(envelope_id),
                                                       report.warnings)

    report, applied = asyncio.run(go())
    _warn(report.warnings)
    if as_json:
        click.echo(json.dumps({**status_json(report),
                               "restrictions": [r.to_json() for r in applied]},
                              indent=2, sort_keys=True, ensure_ascii=True))
    else:
        print_status(report)
        print_receipts(applied)


def print_receipts(applied: Sequence[restrictions.Receipt]) -> None:
    """Each node's signed receipt of an update of this envelope (`restrict`, `recall`)."""
    if not applied:
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="restriction updates applied")
    for column in ("node", "update", "action", "applied", "envelopes there"):
        table.add_column(column)
    for r in applied:
        table.add_row(view.safe(r.node), r.update, r.action, _when(r.applied),
                      str(len(r.envelopes)))
    tables.console().print(table)


def _statement_json(s: Statement) -> dict[str, Any]:
    return {"step": s.step.value, "about": id_to_text(s.envelope),
            "recipients": list(s.recipients), "by": s.by, "at": s.at}


def evidence_json(c: CheckedEvidence) -> dict[str, Any]:
    out: dict[str, Any] = {
        "envelope": c.carrier, "verified": c.attested is not None, "error": c.error,
        "statement": (base64.b64encode(c.statement_bytes).decode("ascii")
                      if c.statement_bytes is not None else None)}
    if c.attested is not None:
        out.update(_statement_json(c.attested.statement), signer=c.attested.signer.principal,
                   signer_key_id=c.attested.key_id.hex())
    elif c.statement_bytes is not None:
        try:  # what a refused statement claims, for whoever investigates it
            out["claimed"] = _statement_json(claimed(c.statement_bytes))
        except LiaisonError:
            out["claimed"] = None
    return out


def status_json(report: StatusReport) -> dict[str, Any]:
    return {
        **view.status_json(report.status),  # the node's own view: hops, local inboxes
        "sender": report.sender,
        "recipients": [{"officer": p.officer, "state": p.state,
                        **{step.value: p.at(step) for step in Step},
                        "refused": p.refused, "expired": p.expired} for p in report.progress],
        "evidence": [evidence_json(c) for c in report.evidence],
        "warnings": report.warnings,
    }


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ms)


_STATE_STYLE = {"opened": "green", "delivered": "green", "relayed": "cyan",
                "accepted": "yellow", "pending": "yellow", "refused": "red", "expired": "red"}


def print_status(report: StatusReport) -> None:
    if not report.progress:  # not our envelope: only the node's view of it
        view.print_status(report.status)
        return
    console = tables.console()
    console.print(Text(f"envelope {report.status.id}", style="bold"))
    if report.status.hold is not None:  # four-eyes: held, approved by, rejected by
        console.print(f"four-eyes: {view.safe(view.hold_line(report.status.hold))}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("recipient", "state", *(s.value for s in Step), "problem"):
        table.add_column(column)
    for p in report.progress:
        problem = (f"refused: {p.refused}" if p.refused is not None
                   else "expired undelivered" if p.expired else "")
        table.add_row(view.safe(p.officer), Text(p.state, style=_STATE_STYLE.get(p.state, "")),
                      *(_when(p.at(step)) for step in Step), view.safe(problem))
    console.print(table)
    good = sum(1 for c in report.evidence if c.attested is not None)
    bad = len(report.evidence) - good
    console.print(f"{good} signed statement(s) verified"
                  + (f", {bad} refused (see the warnings)" if bad else ""))
