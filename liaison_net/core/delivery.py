"""The delivery state machine of one envelope towards one destination, and peer backoff.

Theory of operation. An envelope accepted by the origin node gets one *hop* per remote
destination node, stored ``QUEUED`` in the same write as the envelope. A hop moves only
along ``TRANSITIONS``, and the store moves it only by asking ``next_state``
(``store/envelope_store.py`` ``_move_hops``): this table is the one source of truth for
what the store does. An illegal event raises ``Conflict`` naming the event and the state
and leaves the state unchanged, so a bug shows up as a refused move, never as a hop that
leaves a final state (a delivered envelope later called expired, say).

    QUEUED --ack-----> DELIVERED   (the peer answered accepted or duplicate)
    QUEUED --refuse--> REFUSED     (the peer refused for good; a signed non-delivery notice)
    QUEUED --expire--> EXPIRED     (the expiry sweep; a signed non-delivery notice)

Everything else leaves the hop where it is and is *not an event*: a connection error, a
timeout, a 5xx, a malformed answer or a "not yet" refusal keeps the hop ``QUEUED`` and
backs the peer off (the backoff lives in the ``peers`` table, not in the hop).

Why there is no IN_FLIGHT state. The batches a sender has outstanding (up to ``[delivery]
in_flight`` per peer) are held in its memory, their ids claimed there
(federation/inflight.py). Writing ``IN_FLIGHT`` before each post would cost one more write per
batch on the hot path, and a ``RECOVER`` pass at every start to put those hops back,
to record something no decision depends on: after a crash the hop is simply still
``QUEUED``, the sender offers it again, and the receiver dedupes by envelope id, so the
answer is ``duplicate`` and the hop becomes ``DELIVERED`` (at-least-once between nodes,
exactly once per inbox). The expiry sweep already waits twice the request timeout past a
hop's expiry, so it never ends a hop whose batch may still be answered. Several senders
for one peer (issue 17: workers on PostgreSQL) will need to claim hops so that two workers
do not post the same batch; that is a lease beside the state (who, until when), decided
there, not a state this table pretends to have today.

Backoff is a pure function of (attempts, random) so a restart that reloads ``attempts``
from disk resumes the same curve.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from liaison_net.errors import Conflict


class HopState(enum.Enum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    REFUSED = "refused"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (HopState.DELIVERED, HopState.REFUSED, HopState.EXPIRED)


class HopEvent(enum.Enum):
    ACK = "ack"  # the peer answered accepted or duplicate (``finish_hops`` delivered)
    REFUSE = "refuse"  # the peer refused for good (``finish_hops`` refused)
    EXPIRE = "expire"  # past expiry and the in-flight margin (``expire_due``)


#: (state, event) -> next state. Everything not listed is illegal.
TRANSITIONS: dict[tuple[HopState, HopEvent], HopState] = {
    (HopState.QUEUED, HopEvent.ACK): HopState.DELIVERED,
    (HopState.QUEUED, HopEvent.REFUSE): HopState.REFUSED,
    (HopState.QUEUED, HopEvent.EXPIRE): HopState.EXPIRED,
}


def next_state(state: HopState, event: HopEvent) -> HopState:
    """The state after ``event``; ``Conflict`` (state unchanged) if the table has no such
    move, e.g. any event on a final hop."""
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
