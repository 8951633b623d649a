"""[requests]: when an open incoming request is escalated before it is due
(services/request_desk.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.config.fields import _num
from liaison_net.errors import ConfigError


@dataclass(frozen=True)
class RequestConfig:
    escalate_before_s: float = 3600.0  # escalate an open incoming request this long before due
    check_s: float = 5.0


def _requests(req: dict[str, Any]) -> RequestConfig:
    if unknown := set(req) - {"escalate_before_s", "check_s"}:
        raise ConfigError(f"unknown requests key(s): {', '.join(sorted(unknown))}")
    return RequestConfig(
        escalate_before_s=_num(req, "requests.escalate_before_s", 3600.0, 0, 30 * 86_400),
        check_s=_num(req, "requests.check_s", 5.0, 0.05, 3600))
