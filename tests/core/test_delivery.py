"""Delivery states move only along the table; backoff grows, is capped and jittered."""

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


def test_happy_path_and_retry() -> None:
    s = HopState.QUEUED
    s = next_state(s, HopEvent.SEND)
    s = next_state(s, HopEvent.FAIL)
    assert s is HopState.QUEUED
    s = next_state(next_state(s, HopEvent.SEND), HopEvent.ACK)
    assert s is HopState.DELIVERED and s.final


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
