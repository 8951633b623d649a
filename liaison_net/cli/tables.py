"""How every `liaison` table reaches its reader.

On a terminal a table fits the window, but an id column never wraps or shrinks: ids are
copied into `read`, `reply`, `status`. Piped into a file or another program there is no
window to fit: rich would still assume 80 columns and cut ids and errors with an ellipsis,
so the width becomes ``PIPED_WIDTH`` and every cell prints whole (a cell longer than that
folds onto the next line rather than losing its end). Scripts should prefer ``--json``,
which every listing command has.

Markup, highlighting and emoji are off: cells carry text from the network or the database.
rich is imported when a table is made, not with this module: `--json` and `--help` print
none, and a `liaison admin` start-up should not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

#: The width a piped table may take: wide enough for any row we print, still a limit.
PIPED_WIDTH = 4096
ID_WIDTH = 26  # an envelope id in Crockford base32


def console() -> Console:
    from rich.console import Console

    out = Console(markup=False, highlight=False, emoji=False, soft_wrap=False)
    if not out.is_terminal:
        out.width = PIPED_WIDTH
    return out


def table(*columns: str, title: str | None = None, ids: tuple[str, ...] = ("id",),
          compact: bool = False) -> Table:
    """A table whose ``ids`` columns never wrap or shrink and whose other columns fold
    (never cut) when the window is narrow; ``compact``: the officer views' light frame."""
    from rich import box
    from rich.table import Table

    out = (Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False) if compact
           else Table(title=title))
    for name in columns:
        if name in ids:
            out.add_column(name, no_wrap=True, min_width=ID_WIDTH)
        else:
            out.add_column(name, overflow="fold")
    return out
