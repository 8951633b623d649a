"""[delivery]: how this node's senders retry, batch and pipeline envelopes to its peers
(federation/sender.py, federation/inflight.py) and how often its sweeps run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liaison_net.config.fields import _num
from liaison_net.core.delivery import BackoffPolicy
from liaison_net.errors import ConfigError

_KNOWN = {"backoff_initial_s", "backoff_max_s", "batch_size", "request_timeout_s",
          "expiry_sweep_s", "directory_push_s", "group_commit_max",
          "batch_bytes", "in_flight", "lease_s", "inbox_poll_s"}


@dataclass(frozen=True)
class DeliveryConfig:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    batch_size: int = 256  # envelopes per federation transaction
    batch_bytes: int = 4 * 1024 * 1024  # envelope bytes per transaction (one envelope at least)
    in_flight: int = 3  # transactions in flight per peer (federation/inflight.py)
    request_timeout_s: float = 30.0
    expiry_sweep_s: float = 5.0
    directory_push_s: float = 2.0
    group_commit_max: int = 512  # writes per commit at most
    # Several workers for one node (docs/operations.md): how long a peer's sender lease
    # lasts unrenewed (a dead holder's peer waits that long for another worker), and how
    # often live inbox streams look for entries another worker committed.
    lease_s: float = 10.0
    inbox_poll_s: float = 1.0


def _backoff(delivery: dict[str, Any]) -> BackoffPolicy:
    """The retry backoff, then no key [delivery] does not know. Read before [signals] and
    the rest of [delivery] (``_delivery``): the order in which ``parse`` reports errors."""
    backoff = BackoffPolicy(
        initial_s=_num(delivery, "delivery.backoff_initial_s", 1.0, 0.01, 600),
        maximum_s=_num(delivery, "delivery.backoff_max_s", 60.0, 0.1, 3600),
    )
    if unknown := set(delivery) - _KNOWN:
        raise ConfigError(f"unknown delivery key(s): {', '.join(sorted(unknown))}")
    return backoff


def _delivery(delivery: dict[str, Any], backoff: BackoffPolicy) -> DeliveryConfig:
    return DeliveryConfig(
        backoff=backoff,
        batch_size=int(_num(delivery, "delivery.batch_size", 256, 1, 4096)),
        batch_bytes=int(_num(delivery, "delivery.batch_bytes", 4 * 1024 * 1024,
                             64 * 1024, 64 * 1024 * 1024)),
        # A peer admits 8 requests of ours at once by default (its [federation]
        # in_flight_per_peer): at most 4 transactions, one more in the slot kept for
        # urgent ones, and a directory push.
        in_flight=int(_num(delivery, "delivery.in_flight", 3, 1, 4)),
        request_timeout_s=_num(delivery, "delivery.request_timeout_s", 30.0, 0.5, 600),
        expiry_sweep_s=_num(delivery, "delivery.expiry_sweep_s", 5.0, 0.1, 3600),
        directory_push_s=_num(delivery, "delivery.directory_push_s", 2.0, 0.1, 3600),
        group_commit_max=int(_num(delivery, "delivery.group_commit_max", 512, 1, 10_000)),
        lease_s=_num(delivery, "delivery.lease_s", 10.0, 0.5, 600),
        inbox_poll_s=_num(delivery, "delivery.inbox_poll_s", 1.0, 0.05, 60),
    )
