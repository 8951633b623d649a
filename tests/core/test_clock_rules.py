"""Clock rules at their boundaries (issue 9, clock skew): ``check_fresh`` and through
``verify_frame``; the refusal names how far ahead the envelope is and the window."""

from __future__ import annotations

import pytest

from liaison_net import clock
from liaison_net.core import sealing
from liaison_net.core.envelope import check_fresh
from liaison_net.core.limits import HOUR_MS, MINUTE_MS, Limits
from liaison_net.errors import BadTimestamp, Expired
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


def test_clock_offset_from_environment() -> None:
    read = clock._read_offset
    assert read({}) == 0
    assert read({clock.OFFSET_ENV: ""}) == 0
    assert read({clock.OFFSET_ENV: "180000"}) == 180_000
    assert read({clock.OFFSET_ENV: "+600_000"}) == 600_000
    assert read({clock.OFFSET_ENV: "-60000"}) == -60_000
    for bad in ("3min", "1.5", str(clock.MAX_OFFSET_MS + 1)):
        with pytest.raises(SystemExit, match=clock.OFFSET_ENV):
            read({clock.OFFSET_ENV: bad})


def test_clock_reads_the_wall_clock_plus_offset() -> None:
    import time

    before = time.time_ns() // 1_000_000 + clock.OFFSET_MS
    reading = clock.now_ms()
    after = time.time_ns() // 1_000_000 + clock.OFFSET_MS
    assert before <= reading <= after
    assert abs(clock.now().timestamp() * 1000 - clock.now_ms()) < 1000
