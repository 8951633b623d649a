"""[keys]: ``cosign_threshold``, the co-signatures of the other national nodes a node key
change needs before this node believes it (core/key_change.py)."""

from __future__ import annotations

from typing import Any

from liaison_net.errors import ConfigError


def _cosign_threshold(table: dict[str, Any]) -> int:
    """[keys] cosign_threshold: 1-8 co-signatures of other national nodes (default 2)."""
    if unknown := set(table) - {"cosign_threshold"}:
        raise ConfigError(f"unknown keys key(s): {', '.join(sorted(unknown))}")
    value = table.get("cosign_threshold", 2)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8:
        raise ConfigError("keys.cosign_threshold must be a whole number between 1 and 8")
    return value
