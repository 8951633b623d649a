"""Clock rules at their boundaries (issue 9, clock skew): ``check_fresh`` and through
``verify_frame``; the refusal names how far ahead the envelope is and the window."""

from __future__ import annotations

import pytest

from liaison_net import clock
from liaison_net.clock import Clock, ManualClock
from liaison_net.core import sealing
from liaison_net.core.envelope import check_fresh
from liaison_net.core.limits import HOUR_MS, MINUTE_MS, Limits
from liaison_net.errors import BadTimestamp, ConfigError, Expired
from tests.core.factories import NOW, Officer, lookup_for, seal_from

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
SKEW = Limits().max_clock_skew_ms


def test_default_window_is_five_minutes() -> None:
    assert SKEW == 5 * MINUTE_MS


@pytest.mark.parametrize("ahead", [0, 1, 3 * MINUTE_MS, SKEW - 1, SKEW])
def test_created_ahead_within_the_window_is_accepted(ahead: int) -> None:
    env = seal_from(ALICE, [BOB], now=NOW + ahead, expires=NOW + HOUR_MS)
    check_fresh(env.header, NOW)


def test_created_behind_is_accepted_until_expiry() -> None:
    # A slow clock at the sender only makes an envelope look older: store and forward may
    # legitimately deliver hours later, so only ``expires`` bounds it.
    env = seal_from(ALICE, [BOB], now=NOW - 50 * MINUTE_MS, expires=NOW + 10 * MINUTE_MS)
    check_fresh(env.header, NOW)


@pytest.mark.parametrize(("ahead", "named"), [
    (SKEW + 1, "5.0 min ahead"),
    (10 * MINUTE_MS, "10 min ahead"),
    (10 * MINUTE_MS + 12_000, "10.2 min ahead"),
])
def test_created_beyond_the_window_names_the_skew(ahead: int, named: str) -> None:
    env = seal_from(ALICE, [BOB], now=NOW + ahead, expires=NOW + HOUR_MS)
    with pytest.raises(BadTimestamp) as caught:
        check_fresh(env.header, NOW)
    assert named in caught.value.detail
    assert "this node's clock" in caught.value.detail
    assert "window is 5 min" in caught.value.detail
    assert caught.value.code == "bad_timestamp"


def test_window_follows_the_configured_limit() -> None:
    env = seal_from(ALICE, [BOB], now=NOW + 2 * MINUTE_MS, expires=NOW + HOUR_MS)
    check_fresh(env.header, NOW, Limits(max_clock_skew_ms=2 * MINUTE_MS))
    with pytest.raises(BadTimestamp, match=r"2 min ahead .*window is 1.5 min"):
        check_fresh(env.header, NOW, Limits(max_clock_skew_ms=90_000))
    with pytest.raises(BadTimestamp, match="window is 500 ms"):
        check_fresh(env.header, NOW + 2 * MINUTE_MS - 501, Limits(max_clock_skew_ms=500))


def test_expiry_boundary() -> None:
    env = seal_from(ALICE, [BOB], expires=NOW + HOUR_MS)
    check_fresh(env.header, NOW + HOUR_MS - 1)
    with pytest.raises(Expired):
        check_fresh(env.header, NOW + HOUR_MS)


def test_verify_frame_applies_the_window_and_none_skips_it() -> None:
    env = seal_from(ALICE, [BOB], now=NOW + 10 * MINUTE_MS, expires=NOW + HOUR_MS)
    lookup = lookup_for(ALICE)
    with pytest.raises(BadTimestamp, match="10 min ahead"):
        sealing.verify(env.to_bytes(), lookup, now=NOW)
    assert sealing.verify(env.to_bytes(), lookup, now=None).header == env.header


def test_clock_offset_is_checked_at_construction_with_a_typed_error() -> None:
    assert Clock().offset_ms == 0
    assert Clock(-60_000).offset_ms == -60_000
    assert Clock(clock.MAX_OFFSET_MS).offset_ms == clock.MAX_OFFSET_MS
    for bad in (clock.MAX_OFFSET_MS + 1, -clock.MAX_OFFSET_MS - 1, 1.5, "600000", True):
        with pytest.raises(ConfigError, match="clock offset"):
            Clock(bad)  # type: ignore[arg-type]  # wrong types on purpose


def test_clock_reads_the_wall_clock_plus_offset() -> None:
    import time

    ahead = Clock(600_000)
    before = time.time_ns() // 1_000_000 + 600_000
    reading = ahead.now_ms()
    after = time.time_ns() // 1_000_000 + 600_000
    assert before <= reading <= after
    # Each reading bracketed by the wall clock, so a descheduled test process cannot fail it.
    low = time.time_ns() // 1_000_000 + 600_000
    shown = ahead.now().timestamp() * 1000
    high = time.time_ns() // 1_000_000 + 600_000
    assert low - 1 <= shown <= high + 1
    # X.509 validity ignores the drill: the host's own time.
    low = time.time_ns() // 1_000_000
    host = ahead.host_now().timestamp() * 1000
    high = time.time_ns() // 1_000_000
    assert low - 1 <= host <= high + 1


def test_a_manual_clock_moves_only_when_told() -> None:
    manual = ManualClock(NOW)
    assert manual.now_ms() == NOW and manual.now_ms() == NOW
    manual.advance(MINUTE_MS)
    assert manual.now_ms() == NOW + MINUTE_MS
    assert manual.now() == manual.host_now()
    assert manual.now().timestamp() * 1000 == NOW + MINUTE_MS
    with pytest.raises(ValueError):
        manual.advance(-1)
