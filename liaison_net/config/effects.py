"""[effects]: the drain that issues what decisions owe (services/effects.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.config.fields import _num
from liaison_net.errors import ConfigError


@dataclass(frozen=True)
class EffectsConfig:
    """[effects]: the drain that issues what decisions owe (services/effects.py)."""

    poll_s: float = 2.0  # a pass at least this often, besides the wake after each commit
    batch: int = 256  # effects per pass
    retry_max_s: float = 300.0  # backoff cap for an effect that keeps failing
    drain_delay_s: float = 0.0  # tests only: hold each pass back (a crash before the drain)
    # After a commit's wake, gather what the next commits owe too: at a light load one seal,
    # one commit and one transaction then cover several envelopes' evidence. Off by
    # default: it halves the CPU of a light load but its bursts lengthen the latency tail.
    linger_s: float = 0.0


def _effects(table: dict[str, Any]) -> EffectsConfig:
    if unknown := set(table) - {"poll_s", "batch", "retry_max_s", "drain_delay_s",
                                "linger_s"}:
        raise ConfigError(f"unknown effects key(s): {', '.join(sorted(unknown))}")
    return EffectsConfig(poll_s=_num(table, "effects.poll_s", 2.0, 0.05, 3600),
                         batch=int(_num(table, "effects.batch", 256, 1, 10_000)),
                         retry_max_s=_num(table, "effects.retry_max_s", 300.0, 0.1, 86_400),
                         drain_delay_s=_num(table, "effects.drain_delay_s", 0.0, 0, 3600),
                         linger_s=_num(table, "effects.linger_s", 0.0, 0, 5))
