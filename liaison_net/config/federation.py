"""[federation]: what one peer may cost this node (hostile-peer limits, issue 9;
federation/guard.py enforces them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.config.fields import _num
from liaison_net.errors import ConfigError


@dataclass(frozen=True)
class FederationLimits:
    """[federation]: what one peer may cost this node (hostile-peer limits, issue 9).

    The defaults sit well above what an honest peer sends (at most ``[delivery] in_flight``
    (<= 4) transactions and a directory push at a time, each at most ``batch_size``
    envelopes); docs/protocol.md §13 lists them."""

    envelopes_per_s: float = 5000.0  # per peer, long-run; a request costs max(1, items)
    burst: int = 10_000  # per peer: what the token bucket holds
    in_flight_per_peer: int = 8  # requests of one peer being handled at once
    connections_per_peer: int = 16  # open TLS connections of one peer
    handshake_timeout_s: float = 10.0  # TCP accept -> TLS handshake done
    # connection open (or last answer) -> request head read; also the idle keep-alive time,
    # kept above aiohttp clients' 15 s keep-alive so a sender never reuses a closing one
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0  # request head -> whole body read
    audit_window_s: float = 60.0  # at most one audit entry per peer per window for refusals


def _federation_limits(table: dict[str, Any]) -> FederationLimits:
    d = FederationLimits()
    bounds: dict[str, tuple[float, float, float]] = {
        "envelopes_per_s": (d.envelopes_per_s, 0.1, 1_000_000),
        "burst": (d.burst, 1, 1_000_000),
        "in_flight_per_peer": (d.in_flight_per_peer, 1, 1024),
        "connections_per_peer": (d.connections_per_peer, 1, 4096),
        "handshake_timeout_s": (d.handshake_timeout_s, 0.1, 300),
        "header_timeout_s": (d.header_timeout_s, 0.1, 3600),
        "body_timeout_s": (d.body_timeout_s, 0.1, 3600),
        "audit_window_s": (d.audit_window_s, 1, 86_400),
    }
    if unknown := set(table) - set(bounds):
        raise ConfigError(f"unknown federation key(s): {', '.join(sorted(unknown))}")
    values = {key: _num(table, f"federation.{key}", default, lo, hi)
              for key, (default, lo, hi) in bounds.items()}
    for key in ("burst", "in_flight_per_peer", "connections_per_peer"):
        if values[key] != int(values[key]):
            raise ConfigError(f"federation.{key} must be a whole number")
    if values["connections_per_peer"] < values["in_flight_per_peer"]:
        raise ConfigError("federation.connections_per_peer must be at least "
                          "federation.in_flight_per_peer")
    return FederationLimits(
        envelopes_per_s=values["envelopes_per_s"], burst=int(values["burst"]),
        in_flight_per_peer=int(values["in_flight_per_peer"]),
        connections_per_peer=int(values["connections_per_peer"]),
        handshake_timeout_s=values["handshake_timeout_s"],
        header_timeout_s=values["header_timeout_s"], body_timeout_s=values["body_timeout_s"],
        audit_window_s=values["audit_window_s"])
