"""[supervision]: how a crashed background loop is restarted (supervisor.py; the policy
and its defaults are ``core/restart.py``'s ``RestartPolicy``)."""

from __future__ import annotations

from typing import Any

from liaison_net.config.fields import _num
from liaison_net.core.restart import RestartPolicy
from liaison_net.errors import ConfigError


def _supervision(table: dict[str, Any]) -> RestartPolicy:
    """[supervision]: how a crashed background loop is restarted (supervisor.py)."""
    if unknown := set(table) - {"restart_base_s", "restart_max_s", "intensity", "period_s"}:
        raise ConfigError(f"unknown supervision key(s): {', '.join(sorted(unknown))}")
    base = _num(table, "supervision.restart_base_s", 0.5, 0.01, 600)
    return RestartPolicy(
        base_s=base, max_s=max(base, _num(table, "supervision.restart_max_s", 30.0, 0.01, 3600)),
        intensity=int(_num(table, "supervision.intensity", 5, 1, 1000)),
        period_s=_num(table, "supervision.period_s", 60.0, 1, 86_400))
