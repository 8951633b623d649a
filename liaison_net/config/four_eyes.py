"""[four_eyes]: which envelopes need a second officer before they leave this node, who may
approve them and how long they wait (core/approval.py, services/holds.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liaison_net.config.fields import _num, _table
from liaison_net.core.approval import FourEyesPolicy
from liaison_net.core.ids import check_officer_id, node_of
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.core.signals import Severity
from liaison_net.errors import ConfigError, LiaisonError


@dataclass(frozen=True)
class FourEyesConfig:
    """[four_eyes]: which envelopes need a second officer before they leave this node, who
    may approve them (per unit: the tag owner's unit), and how long they wait. Off when
    the section is absent; present, the policy defaults to TLP:RED, H3 and signals of
    the highest severity (core/approval.py)."""

    enabled: bool = False
    policy: FourEyesPolicy = field(default_factory=FourEyesPolicy)
    unit_policies: dict[str, FourEyesPolicy] = field(default_factory=dict)
    approvers: dict[str, frozenset[str]] = field(default_factory=dict)  # unit -> officers
    hold_hours: float = 24.0
    sweep_s: float = 30.0

    def policy_for(self, unit: str) -> FourEyesPolicy:
        return self.unit_policies.get(unit, self.policy)

    def units_of(self, officer: str) -> list[str]:
        return sorted(u for u, people in self.approvers.items() if officer in people)


def _four_eyes(data: dict[str, Any], node_id: str) -> FourEyesConfig:
    """[four_eyes], with [four_eyes.approvers] (unit = [officer ids]: this node's count) and
    [four_eyes.units.<unit>] (a unit's own tlp / handling / signal_severity lists)."""
    if "four_eyes" not in data:
        return FourEyesConfig()
    table = _table(data, "four_eyes")
    known = {"enabled", "tlp", "handling", "signal_severity", "hold_hours", "sweep_s",
             "approvers", "units"}
    if unknown := set(table) - known:
        raise ConfigError(f"unknown four_eyes key(s): {', '.join(sorted(unknown))}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("four_eyes.enabled must be true or false")
    approvers: dict[str, frozenset[str]] = {}
    for unit, people in _table(table, "approvers", required=False).items():
        name = f"four_eyes.approvers.{unit}"
        if not isinstance(people, list) or not people:
            raise ConfigError(f"{name} must be a non-empty list of officer ids")
        try:
            ids = frozenset(check_officer_id(p, what=name) for p in people)
        except LiaisonError as exc:
            raise ConfigError(f"{name}: {exc.detail}") from None
        # One list may serve every node of a network (the demo's, the tests'): each node
        # takes only its own officers; an approver is always of the sender's node.
        approvers[unit] = frozenset(p for p in ids if node_of(p) == node_id)
    units = _table(table, "units", required=False)
    return FourEyesConfig(
        enabled=enabled, policy=_four_eyes_policy(table, "four_eyes"),
        unit_policies={u: _four_eyes_policy(_table(units, u), f"four_eyes.units.{u}")
                       for u in units},
        approvers=approvers,
        hold_hours=_num(table, "four_eyes.hold_hours", 24.0, 0.0001, 30 * 24),
        sweep_s=_num(table, "four_eyes.sweep_s", 30.0, 0.05, 3600))


def _four_eyes_policy(table: dict[str, Any], name: str) -> FourEyesPolicy:
    if unknown := set(table) - {"tlp", "handling", "signal_severity", "enabled",
                                "hold_hours", "sweep_s", "approvers", "units"}:
        raise ConfigError(f"unknown {name} key(s): {', '.join(sorted(unknown))}")
    default = FourEyesPolicy()

    def values(key: str) -> list[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}.{key} must be a list of names")
        return value

    try:
        tlp, handling, severity = values("tlp"), values("handling"), values("signal_severity")
        return FourEyesPolicy(
            tlp=default.tlp if tlp is None else frozenset(Tlp(v) for v in tlp),
            handling=(default.handling if handling is None
                      else frozenset(Handling(v) for v in handling)),
            signal_severity=(default.signal_severity if severity is None
                             else frozenset(Severity.from_label(v) for v in severity)))
    except (ValueError, LiaisonError):
        raise ConfigError(f"{name}: tlp takes {[t.value for t in Tlp]}, handling "
                          f"{[h.value for h in Handling]}, signal_severity "
                          f"{[s.label for s in Severity]}") from None
