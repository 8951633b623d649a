"""[signals]: acknowledgement deadlines per severity and the escalation sweep. The
defaults of the deadlines are ``core/signals.py``'s ``DEFAULT_ACK_DEADLINE_MS``."""

from __future__ import annotations

from typing import Any

from liaison_net.config.fields import _num
from liaison_net.core.signals import DEFAULT_ACK_DEADLINE_MS, Severity, SignalConfig
from liaison_net.errors import ConfigError


def _signals(sig: dict[str, Any]) -> SignalConfig:
    known_signals = {f"ack_deadline_{s.label}_s" for s in Severity} | {
        "escalation_check_s", "evaluations_per_hour"}
    if unknown := set(sig) - known_signals:
        raise ConfigError(f"unknown signals key(s): {', '.join(sorted(unknown))}")
    return SignalConfig(
        ack_deadline_ms={s: int(1000 * _num(sig, f"signals.ack_deadline_{s.label}_s",
                                            DEFAULT_ACK_DEADLINE_MS[s] / 1000, 0.1, 30 * 86_400))
                         for s in Severity},
        escalation_check_s=_num(sig, "signals.escalation_check_s", 1.0, 0.05, 3600),
        evaluations_per_hour=int(_num(sig, "signals.evaluations_per_hour", 30, 1, 10_000)),
    )
