"""[audit]: checkpoints of the audit log, witnessed by the peers (services/checkpoints.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.config.fields import _num
from liaison_net.errors import ConfigError


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: checkpoints of the audit log, witnessed by the peers (services/checkpoints.py)."""

    checkpoint_every: int = 1000  # a checkpoint once this many entries were added
    checkpoint_seconds: float = 300.0  # and at least this often while entries are added


def _audit(table: dict[str, Any]) -> AuditConfig:
    if unknown := set(table) - {"checkpoint_every", "checkpoint_seconds"}:
        raise ConfigError(f"unknown audit key(s): {', '.join(sorted(unknown))}")
    return AuditConfig(
        checkpoint_every=int(_num(table, "audit.checkpoint_every", 1000, 1, 1_000_000)),
        checkpoint_seconds=_num(table, "audit.checkpoint_seconds", 300.0, 0.1, 86_400))
