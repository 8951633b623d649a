"""The audit entries a data protection officer asks for, read page by page.

``liaison admin audit export`` streams a time range of the chain, filtered by officer,
envelope or event, without holding the table in memory: each page is one short read
(``Database.fetchall``) of at most ``PAGE`` rows after the last seq seen, up to the head
the export started at, so a running node keeps writing beside it and what is appended
meanwhile is left for the next export. There is no index on ``at`` or ``actor``: every
index would cost each accept a write, while an export is a rare scan (the rows come in
seq order, which is the order the node decided in).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from liaison_net.core.audit import AuditEntry, detail_text, event_name, stored_event
from liaison_net.store.audit_store import ENTRY_COLUMNS
from liaison_net.store.database import Database

PAGE = 500


@dataclass(frozen=True)
class AuditQuery:
    since: int  # ms, inclusive
    until: int  # ms, exclusive
    officer: str | None = None  # the actor, or named in the detail (an inbox, a recipient)
    envelope_id: bytes | None = None
    envelope_text: str | None = None  # the same id as text: a forward or match naming it
    events: tuple[str, ...] = ()  # any of these; () for all


def _where(query: AuditQuery) -> tuple[str, list[object]]:
    clauses = ["at >= ?", "at < ?"]
    params: list[object] = [query.since, query.until]
    if query.officer is not None:
        # Ids are checked (``check_officer_id``): quoted as JSON, they match whole values.
        # A stored detail codes only keys and fixed values (``core.audit.DETAIL_TOKENS``),
        # never an id, so the id is found in it as it is.
        clauses.append("(actor = ? OR instr(detail, ?) > 0)")
        params += [query.officer, json.dumps(query.officer)]
    if query.envelope_id is not None:
        clauses.append("(envelope_id = ? OR instr(detail, ?) > 0)")
        params += [query.envelope_id, json.dumps(query.envelope_text)]
    if query.events:
        # Each by its code and by its name (a row stored before its code was given).
        spelled = sorted({s for e in query.events for s in (e, stored_event(e))})
        clauses.append(f"event IN ({', '.join('?' * len(spelled))})")
        params += spelled
    return " AND ".join(clauses), params


async def audit_head(db: Database) -> int:
    """The seq of the last entry (0 for none): where an export started reading stops."""
    row = await db.fetchone("SELECT COALESCE(MAX(seq), 0) FROM audit")
    return int(row[0]) if row is not None else 0


async def matching(db: Database, query: AuditQuery, *, head: int) -> AsyncIterator[AuditEntry]:
    """The entries of ``query`` up to seq ``head``, in seq order, ``PAGE`` at a time.
    ``prev`` is left empty: an export is not a proof (``audit verify`` checks the chain)."""
    where, params = _where(query)
    after = 0
    while True:
        rows = await db.fetchall(
            f"SELECT {ENTRY_COLUMNS} FROM audit WHERE seq > ? AND seq <= ? AND {where} "
            "ORDER BY seq LIMIT ?", (after, head, *params, PAGE))
        for r in rows:
            yield AuditEntry(r[0], r[1], event_name(r[2]),
                             bytes(r[3]) if r[3] is not None else None,
                             r[4], detail_text(r[5]), b"", bytes(r[6]))
        if len(rows) < PAGE:
            return
        after = int(rows[-1][0])
