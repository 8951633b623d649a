"""Delivery states move only along the table (queued to one final state, never out of
one); backoff grows, is capped and jittered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core.delivery import (
    TRANSITIONS,
    BackoffPolicy,
    HopEvent,
    HopState,
    next_state,
)
from liaison_net.errors import Conflict


def test_a_queued_hop_ends_in_exactly_one_final_state_per_event() -> None:
    """Each event takes a queued hop to its own final state, and the store's three
    outcomes are the whole table: there is no state or event the store never writes."""
    assert {event: next_state(HopState.QUEUED, event) for event in HopEvent} == {
        HopEvent.ACK: HopState.DELIVERED,
        HopEvent.REFUSE: HopState.REFUSED,
        HopEvent.EXPIRE: HopState.EXPIRED,
    }
    assert set(TRANSITIONS) == {(HopState.QUEUED, event) for event in HopEvent}
    assert {state for state in HopState if not state.final} == {HopState.QUEUED}


@pytest.mark.parametrize("state", list(HopState))
@pytest.mark.parametrize("event", list(HopEvent))
def test_every_pair_is_legal_or_refused(state: HopState, event: HopEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(Conflict, match=f"{event.value} is illegal in state {state.value}"):
            next_state(state, event)


def test_final_states_have_no_exit() -> None:
    for (state, _event) in TRANSITIONS:
        assert not state.final
    for state in HopState:
        if state.final:
            for event in HopEvent:
                with pytest.raises(Conflict):
                    next_state(state, event)


@given(events=st.lists(st.sampled_from(list(HopEvent)), max_size=6))
def test_any_event_sequence_makes_at_most_one_move(events: list[HopEvent]) -> None:
    """Whatever arrives, in whatever order (a duplicate ack, an ack after expiry), the hop
    moves once, on the first event, and an illegal event leaves the state as it was."""
    state, moves = HopState.QUEUED, 0
    for event in events:
        try:
            after = next_state(state, event)
        except Conflict:
            continue
        assert after is not state and after.final
        state, moves = after, moves + 1
    assert moves == min(1, len(events))
    assert state is (next_state(HopState.QUEUED, events[0]) if events else HopState.QUEUED)


@given(attempts=st.integers(0, 1000), rand=st.floats(0, 1, exclude_max=True))
def test_backoff_is_bounded(attempts: int, rand: float) -> None:
    policy = BackoffPolicy()
    delay = policy.delay(attempts, rand)
    assert 0 <= delay <= policy.maximum_s
    if attempts >= 1:
        assert delay >= policy.initial_s / 2


def test_backoff_grows_then_caps() -> None:
    policy = BackoffPolicy(initial_s=1, maximum_s=60)
    highs = [policy.delay(n, 0.999999) for n in range(1, 10)]
    assert highs == sorted(highs)
    assert highs[0] == pytest.approx(1, rel=1e-3)
    assert highs[-1] == pytest.approx(60, rel=1e-3)
