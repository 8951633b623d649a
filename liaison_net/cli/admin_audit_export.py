"""`liaison admin audit export`: the node's audit entries for the data protection officer.

LED Art. 25 logs (collection, consultation, disclosure, combination, erasure, and failed
logins beside them) are rows of the audit chain; this command hands a time range of them
over as JSON or CSV, filtered by officer, envelope, event or Art. 25 category. It opens the
store read-only beside the running node and streams page by page (``store.audit_query``),
so a year of entries never sits in memory. The output starts with a header naming the
node, the range, the filters and the head entry the export read up to.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from liaison_net import config as config_mod
from liaison_net.cli.admin_store import read_store
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import art25
from liaison_net.core.audit import AuditEntry
from liaison_net.core.ids import check_officer_id, id_from_text, id_to_text
from liaison_net.errors import ConfigError, LimitExceeded, Malformed

if TYPE_CHECKING:
    from liaison_net.store.node_store import NodeStore

MAX_RANGE_DAYS = 366  # one export: a year and a day at most; ask again for the next
MAX_EVENTS = 32  # --event given at most this many times
_EVENT = re.compile(r"[a-z][a-z_]{0,31}(\.[a-z_]{1,32}){1,2}")
CSV_COLUMNS = ("seq", "at", "event", "categories", "envelope", "actor", "detail", "hash")


def parse_instant(text: str, option: str) -> datetime:
    """A date (``2026-12-01``, midnight UTC) or a date and time with its zone
    (``2026-12-01T08:00:00Z``, ``...+01:00``); a time without a zone is refused, since
    the DPO's local time and the node's could differ."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(f"{option} {text!r:.40} is not a date (2026-12-01) or a date and "
                        "time with a zone (2026-12-01T08:00:00Z)") from None
    if parsed.tzinfo is None:
        if len(value) > 10:
            raise Malformed(f"{option} {text!r:.40} has a time but no zone: add Z or "
                            "an offset such as +01:00")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def export_range(since: str, until: str | None, now: datetime) -> tuple[int, int]:
    """(since, until) in ms: ``since`` inclusive, ``until`` exclusive (default now), at
    most ``MAX_RANGE_DAYS`` apart, ``since`` before ``until``."""
    start = parse_instant(since, "--since")
    end = parse_instant(until, "--until") if until is not None else now
    if end <= start:
        raise Malformed(f"--until ({end.isoformat()}) must be after --since "
                        f"({start.isoformat()})")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise LimitExceeded(f"an export covers at most {MAX_RANGE_DAYS} days; this range "
                            f"is {(end - start).days}: export it in parts")
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def check_events(events: tuple[str, ...]) -> tuple[str, ...]:
    if len(events) > MAX_EVENTS:
        raise LimitExceeded(f"at most {MAX_EVENTS} --event options")
    for event in events:
        if not _EVENT.fullmatch(event):
            raise Malformed(f"--event {event!r:.40} is not an event name "
                            "(such as envelope.consulted)")
    return tuple(sorted(set(events)))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula (=, +, -, @ first)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Writer:
    """One output format: a header, the entries one by one, a trailer."""

    def __init__(self, out: TextIO, as_csv: bool, header: dict[str, Any]) -> None:
        self.out, self.as_csv, self.header, self.count = out, as_csv, header, 0
        self._csv = csv.writer(out, lineterminator="\n")

    def start(self) -> None:
        if self.as_csv:
            for key, value in self.header.items():
                self.out.write(f"# {key}: {json.dumps(value)}\n")
            self._csv.writerow(CSV_COLUMNS)
        else:
            self.out.write(json.dumps(self.header)[:-1] + ', "entries": [')

    def entry(self, e: AuditEntry, cats: tuple[str, ...]) -> None:
        envelope = id_to_text(e.envelope_id) if e.envelope_id is not None else ""
        if self.as_csv:
            self._csv.writerow([str(e.seq), _iso(e.at), _cell(e.event), ";".join(cats),
                                envelope, _cell(e.actor), _cell(e.detail), e.hash.hex()])
        else:
            row = {"seq": e.seq, "at": _iso(e.at), "event": e.event,
                   "categories": list(cats), "envelope": envelope or None,
                   "actor": e.actor, "detail": json.loads(e.detail), "hash": e.hash.hex()}
            self.out.write(("\n" if self.count == 0 else ",\n") + json.dumps(row))
        self.count += 1

    def end(self) -> None:
        if self.as_csv:
            self.out.write(f"# entries: {self.count}\n")
        else:
            self.out.write(f"\n], \"count\": {self.count}}}\n")


@click.command("export", cls=Command)
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The node's TOML config.")
@click.option("--since", required=True,
              help="Start (inclusive): 2026-12-01 (midnight UTC) or 2026-12-01T08:00:00Z.")
@click.option("--until", help="End (exclusive), as --since; default now. At most "
              f"{MAX_RANGE_DAYS} days after --since.")
@click.option("--officer", help="Only entries by this officer or naming them (their "
              "inbox, a recipient): e.g. nl/jdevries.")
@click.option("--envelope", "envelope", metavar="ID",
              help="Only entries about this envelope (or a forward or match naming it).")
@click.option("--event", "events", multiple=True, metavar="NAME",
              help="Only this event (repeatable), e.g. envelope.consulted, login.failed.")
@click.option("--category", "categories", multiple=True, type=click.Choice(art25.CATEGORIES),
              help="Only entries standing for this Art. 25 category (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: header, entries.")
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV: '# key: value' header lines, a column row, one row per entry.")
def export_cmd(config_path: Path, since: str, until: str | None, officer: str | None,
               envelope: str | None, events: tuple[str, ...], categories: tuple[str, ...],
               as_json: bool, as_csv: bool) -> None:
    """Export audit entries of a time range for the data protection officer (LED Art. 25).

    Reads the node's store read-only (safe beside the running node) and streams the
    entries in the order the node decided, with the Art. 25 categories each stands for.
    Content, subjects and keys are never in the audit: an entry holds the tag's purpose,
    the officers concerned and reason codes. `liaison admin audit verify` checks that the
    chain the export comes from is intact.
    """
    if as_json == as_csv:
        raise Malformed("choose one output format: --json or --csv")
    cfg = config_mod.load(config_path)
    if not cfg.database.is_file():
        raise ConfigError(f"no node database at {cfg.database}: has node {cfg.id} run yet?")
    start, end = export_range(since, until, cli_clock().host_now())
    wanted = frozenset(categories)
    from liaison_net.store.audit_query import AuditQuery, audit_head, matching  # the store

    query = AuditQuery(
        since=start, until=end,
        officer=check_officer_id(officer) if officer is not None else None,
        envelope_id=id_from_text(envelope.strip()) if envelope is not None else None,
        envelope_text=id_to_text(id_from_text(envelope.strip())) if envelope else None,
        events=check_events(events) or art25.events_of(wanted))

    async def run(store: NodeStore) -> None:
        head = await audit_head(store.db)
        writer = _Writer(sys.stdout, as_csv, {
            "node": cfg.id, "since": _iso(start), "until": _iso(end), "head_seq": head,
            "filters": {"officer": query.officer, "envelope": query.envelope_text,
                        "events": list(events), "categories": sorted(wanted)},
            "exported": _iso(int(cli_clock().host_now().timestamp() * 1000))})
        writer.start()
        async for entry in matching(store.db, query, head=head):
            cats = art25.categories(entry.event, entry.detail)
            if wanted and not wanted.intersection(cats):
                continue
            writer.entry(entry, cats)
        writer.end()

    read_store(cfg, run)
