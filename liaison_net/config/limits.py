"""[limits]: the size and count limits of envelopes this node accepts. The keys, defaults
and bounds are ``core/limits.py``'s ``Limits``, which checks them itself."""

from __future__ import annotations

from typing import Any

from liaison_net.core.limits import Limits
from liaison_net.errors import ConfigError, LiaisonError


def _limits(table: dict[str, Any]) -> Limits:
    try:
        return Limits(**table)
    except TypeError as exc:
        raise ConfigError(f"limits: {exc}") from exc
    except LiaisonError:
        raise
