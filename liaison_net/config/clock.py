"""[clock]: ``drill_offset_ms`` shifts this node's wall clock, for fault drills only, never
in production (``liaison_net/clock.py`` checks the value)."""

from __future__ import annotations

from typing import Any

from liaison_net.clock import check_offset
from liaison_net.errors import ConfigError


def _clock_offset(table: dict[str, Any]) -> int:
    if unknown := set(table) - {"drill_offset_ms"}:
        raise ConfigError(f"unknown clock key(s): {', '.join(sorted(unknown))}")
    return check_offset(table.get("drill_offset_ms", 0), "clock.drill_offset_ms")
