"""The one wall clock of the node and the CLI.

Every timestamp liaison_net writes (an envelope's ``created``, an audit entry's ``at``, a
card's validity) and every freshness check it makes reads this clock. For fault drills it
may be shifted: ``LIAISON_CLOCK_OFFSET_MS`` (signed milliseconds, e.g. ``600000`` for ten
minutes ahead) is read once, when this module is imported, and added to every reading. A
node logs a warning at start when the offset is not zero. It is a drill tool only: the real
remedy for a drifting clock is NTP (docs/operations.md, "Clock drills").

X.509 validity checks (TLS and signing certificates) keep using the host clock: a drill
skews what nodes say to each other, not the PKI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime

OFFSET_ENV = "LIAISON_CLOCK_OFFSET_MS"
#: Drills never need more than a day either way; more is a typo, refused loudly.
MAX_OFFSET_MS = 86_400_000


def _read_offset(environ: Mapping[str, str] = os.environ) -> int:
    text = environ.get(OFFSET_ENV, "").strip()
    if not text:
        return 0
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise SystemExit(f"{OFFSET_ENV} must be an integer number of milliseconds, "
                         f"got {text[:40]!r}") from None
    if abs(value) > MAX_OFFSET_MS:
        raise SystemExit(f"{OFFSET_ENV} must be within +-{MAX_OFFSET_MS} ms (one day), "
                         f"got {value}")
    return value


OFFSET_MS: int = _read_offset()


def now_ms() -> int:
    """Milliseconds since the epoch, on this process's (possibly drill-shifted) clock."""
    return time.time_ns() // 1_000_000 + OFFSET_MS


def now() -> datetime:
    """``now_ms`` as an aware UTC datetime."""
    return datetime.fromtimestamp(now_ms() / 1000, UTC)
