"""The CLI's clock: built once at the edge from ``--clock-offset-ms``, read by commands.

``liaison --clock-offset-ms N ...`` (or ``LIAISON_CLOCK_OFFSET_MS``, for scripts and drills)
shifts what the CLI says the time is: envelopes it seals, checks it makes. The root group
builds the ``Clock`` and keeps it in the click context; commands ask ``cli_clock()`` and
pass it (or its readings) down, so client code never reads a global. A bad value is a
usage error naming the option, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from liaison_net.clock import MAX_OFFSET_MS, OFFSET_ENV, SYSTEM_CLOCK, Clock

F = TypeVar("F", bound=Callable[..., Any])
_KEY = "liaison_net.clock"


def clock_offset_option(func: F) -> F:
    """``--clock-offset-ms`` (env LIAISON_CLOCK_OFFSET_MS), bounded to a day either way."""
    return click.option(
        "--clock-offset-ms", "clock_offset_ms", envvar=OFFSET_ENV, default=None,
        type=click.IntRange(-MAX_OFFSET_MS, MAX_OFFSET_MS), metavar="MS",
        help=f"Drills only: shift this process's clock by MS milliseconds (env {OFFSET_ENV}). "
             "Never in production; NTP is the remedy for a drifting clock.")(func)


def install(ctx: click.Context, offset_ms: int | None) -> Clock:
    """Build the clock for this invocation and keep it where ``cli_clock`` finds it."""
    made = Clock(offset_ms or 0)
    ctx.meta[_KEY] = made
    return made


def cli_clock() -> Clock:
    """The clock the root group built; the host's when a command runs on its own."""
    ctx = click.get_current_context(silent=True)
    found = ctx.meta.get(_KEY) if ctx is not None else None
    return found if isinstance(found, Clock) else SYSTEM_CLOCK
