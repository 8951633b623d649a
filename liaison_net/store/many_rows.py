"""Many rows of one table in few statements: ``INSERT ... VALUES (...), (...), ...``.

Why not ``executemany``: it runs the statement once per row (a bind, a step and a reset
each, and for a table with ``AUTOINCREMENT`` such as ``inbox`` a write of
``sqlite_sequence`` each); one statement of many rows pays those once. The rows go in
groups whose sizes are powers of two up to ``MOST_ROWS`` (100 rows: 64 + 32 + 4), so a
table has at most eight statement texts in the connection's statement cache (128), not
one per batch size, and no statement nears an engine's bound-parameter limit (SQLite
32,766; PostgreSQL 65,535). The rows are inserted in the order given (``inbox.seq``, the
effects' ids and the audit chain follow it)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

#: Rows in one statement at most (x 10 columns for ``envelopes``: 1,280 parameters).
MOST_ROWS = 128


@functools.lru_cache(maxsize=256)
def _statement(one_row: str, rows: int) -> str:
    """``one_row`` (an INSERT ending in one ``VALUES (?, ...)`` group) for ``rows`` rows."""
    head, _, group = one_row.rpartition("VALUES")
    return f"{head}VALUES {', '.join([group.strip()] * rows)}"


def sizes(count: int) -> list[int]:
    """How ``count`` rows are cut: ``MOST_ROWS`` at a time, then the rest's binary digits
    largest first (100 -> [64, 32, 4])."""
    out = [MOST_ROWS] * (count // MOST_ROWS)
    rest = count % MOST_ROWS
    bit = MOST_ROWS // 2
    while rest:
        if rest & bit:
            out.append(bit)
            rest -= bit
        bit //= 2
    return out


def insert_rows(conn: Any, translate: Callable[[str], str], one_row: str,
                rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with ``one_row`` (``INSERT [OR IGNORE] INTO t (...) VALUES (?, ...)``
    in SQLite's dialect; ``translate``: the backend's ``sql``) on the writer connection,
    in order. A constraint refusing any row raises the driver's integrity error."""
    start = 0
    for size in sizes(len(rows)):
        part = rows[start:start + size]
        start += size
        conn.execute(translate(_statement(one_row, size)),
                     [value for row in part for value in row])
