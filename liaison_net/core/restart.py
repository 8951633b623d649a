"""When a crashed background loop is restarted: a pure function of its crash times.

The node's supervisor (``liaison_net.supervisor``) applies it; it lives here, without
asyncio, structlog or the metrics, because the config's ``[supervision]`` table builds one
and every `liaison admin` command reads a config.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff ``base_s * 2**(n-1)`` capped at ``max_s``, jittered to 50-100 %; at most
    ``intensity`` crashes within ``period_s`` before the child is given up on."""

    base_s: float = 0.5
    max_s: float = 30.0
    intensity: int = 5
    period_s: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.max_s <= 3600 and 1 <= self.intensity <= 1000
                and 0 < self.period_s <= 86_400):
            raise ValueError("restart policy out of bounds")

    def decide(self, crashes: deque[float], now: float, rand: float) -> float | None:
        """Record a crash at ``now``: the delay before the restart, or None to give up."""
        crashes.append(now)
        while crashes and crashes[0] <= now - self.period_s:
            crashes.popleft()
        if len(crashes) > self.intensity:
            return None
        base: float = min(self.max_s, self.base_s * 2.0 ** min(len(crashes) - 1, 30))
        return base * (0.5 + 0.5 * min(max(rand, 0.0), 1.0))
