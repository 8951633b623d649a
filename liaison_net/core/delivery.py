"""The delivery state machine of one envelope towards one destination, and peer backoff.

Theory of operation. An envelope accepted by the origin node gets one *hop* per
destination node (its own node for local recipients). A hop moves through the states in
``TRANSITIONS`` and nowhere else; an illegal event raises and leaves the state unchanged,
so a bug shows up as an error, not as a silently lost or doubled envelope. The store
persists the state; the sender loop feeds events in. Backoff is a pure function of
(attempts, random) so a restart that reloads ``attempts`` from disk resumes the same curve.

    QUEUED --send--> IN_FLIGHT --ack--> DELIVERED
       ^                 |  \\--refuse--> REFUSED       (peer said no: permanent, 4xx)
       |                 |
       +----fail---------+                            (network, 5xx, timeout: retry)
    QUEUED | IN_FLIGHT --expire--> EXPIRED            (a signed non-delivery notice follows)
    QUEUED --refuse--> REFUSED                        (policy changed before sending)

A restart puts every IN_FLIGHT hop back to QUEUED (``RECOVER``): the receiver dedupes by
envelope id, so sending twice is safe and an inbox never holds a duplicate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from liaison_net.errors import Conflict


class HopState(enum.Enum):
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    REFUSED = "refused"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (HopState.DELIVERED, HopState.REFUSED, HopState.EXPIRED)


class HopEvent(enum.Enum):
    SEND = "send"
    ACK = "ack"
    FAIL = "fail"
    REFUSE = "refuse"
    EXPIRE = "expire"
    RECOVER = "recover"


_Q, _F = HopState.QUEUED, HopState.IN_FLIGHT

#: (state, event) -> next state. Everything not listed is illegal.
TRANSITIONS: dict[tuple[HopState, HopEvent], HopState] = {
    (_Q, HopEvent.SEND): _F,
    (_Q, HopEvent.REFUSE): HopState.REFUSED,
    (_Q, HopEvent.EXPIRE): HopState.EXPIRED,
    (_F, HopEvent.ACK): HopState.DELIVERED,
    (_F, HopEvent.FAIL): _Q,
    (_F, HopEvent.REFUSE): HopState.REFUSED,
    (_F, HopEvent.EXPIRE): HopState.EXPIRED,
    (_F, HopEvent.RECOVER): _Q,
    (_Q, HopEvent.RECOVER): _Q,
}


def next_state(state: HopState, event: HopEvent) -> HopState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise Conflict(f"event {event.value} is illegal in state {state.value}") from None


@dataclass(frozen=True)
class BackoffPolicy:
    """Tuned for a closed network of a few nodes whose deadlines are hours: start near a
    second, double, cap near a minute, with full jitter over the upper half."""

    initial_s: float = 1.0
    maximum_s: float = 60.0
    factor: float = 2.0

    def delay(self, attempts: int, rand: float) -> float:
        """Seconds to wait after ``attempts`` consecutive failures; ``rand`` in [0, 1)."""
        if attempts <= 0:
            return 0.0
        base = min(self.maximum_s, self.initial_s * self.factor ** min(attempts - 1, 32))
        return base / 2 + (base / 2) * rand
