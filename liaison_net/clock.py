"""The wall clock, as an object the node and the CLI own and pass down.

Every timestamp liaison_net writes (an envelope's ``created``, an audit entry's ``at``, a
card's validity) and every freshness check it makes reads a ``Clock`` handed to it by its
constructor: ``node.py`` builds one for the node, the CLI builds one at its edge
(cli/edge_clock.py). Nothing reads a global, so tests hold time still with ``ManualClock``
and the core keeps taking ``now`` as an argument.

For fault drills a clock may be shifted by ``offset_ms`` (signed milliseconds, e.g.
``600000`` for ten minutes ahead): the node's ``[clock] drill_offset_ms`` or
``--clock-offset-ms`` (docs/operations.md, "Clock drills"). It is a drill tool only; the
real remedy for a drifting clock is NTP. X.509 validity (TLS and signing certificates)
reads ``host_now``, unshifted: a drill skews what nodes say to each other, not the PKI.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from liaison_net.errors import ConfigError

#: The environment variable the CLI accepts for ``--clock-offset-ms`` (read there only).
OFFSET_ENV = "LIAISON_CLOCK_OFFSET_MS"
#: Drills never need more than a day either way; more is a typo, refused loudly.
MAX_OFFSET_MS = 86_400_000


def check_offset(offset_ms: object, what: str = "clock offset") -> int:
    """``offset_ms`` as an int within one day either way, or a ConfigError naming ``what``."""
    if isinstance(offset_ms, bool) or not isinstance(offset_ms, int):
        raise ConfigError(f"{what} must be an integer number of milliseconds, "
                          f"got {str(offset_ms)[:40]!r}")
    if abs(offset_ms) > MAX_OFFSET_MS:
        raise ConfigError(f"{what} must be within +-{MAX_OFFSET_MS} ms (one day), "
                          f"got {offset_ms}")
    return offset_ms


class Clock:
    """The host's wall clock, shifted by a drill offset (0 outside drills)."""

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = check_offset(offset_ms)

    def now_ms(self) -> int:
        """Milliseconds since the epoch, drill offset included."""
        return time.time_ns() // 1_000_000 + self.offset_ms

    def now(self) -> datetime:
        """``now_ms`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now_ms() / 1000, UTC)

    def host_now(self) -> datetime:
        """The host's time without the drill offset, for X.509 validity checks."""
        return datetime.fromtimestamp(time.time_ns() / 1e9, UTC)


#: The unshifted host clock, for callers outside a drill (admin tools, stores opened by
#: tests). A node never relies on it: node.py passes its own Clock everywhere.
SYSTEM_CLOCK = Clock()


class ManualClock(Clock):
    """A clock that moves only when told to, for tests."""

    def __init__(self, start_ms: int) -> None:
        super().__init__(0)
        self._ms = start_ms

    def now_ms(self) -> int:
        return self._ms

    def host_now(self) -> datetime:
        return self.now()

    def advance(self, ms: int) -> None:
        """Move forward by ``ms`` (never back: callers rely on time not reversing)."""
        if ms < 0:
            raise ValueError("a ManualClock only moves forward")
        self._ms += ms
