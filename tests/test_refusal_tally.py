"""``RefusalTally``: a peer's unverifiable envelopes, reported once per window (issue 14)."""

from __future__ import annotations

from liaison_net.core.ratelimit import MAX_TALLY_CODES, RefusalTally


def test_the_first_batch_is_reported_at_once_the_rest_once_the_window_has_passed() -> None:
    tally = RefusalTally(window_s=60)
    assert tally.report(0.0) is None  # nothing refused: nothing to say
    for i in range(1024):
        tally.add("malformed" if i % 2 else "bad_signature", f"d{i}")
    assert tally.report(0.0) == {"refused": 1024, "codes": {"bad_signature": 512,
                                                           "malformed": 512},
                                 "first": "d0", "last": "d1023", "window_s": 60}
    for i in range(40 * 1024):
        tally.add("malformed", f"e{i}")
        assert tally.report(1.0 + i / 1e5) is None  # same window: counted, not reported
    report = tally.report(60.0)
    assert report is not None and report["refused"] == 40 * 1024
    assert (report["first"], report["last"]) == ("e0", f"e{40 * 1024 - 1}")
    assert tally.report(60.0) is None


def test_codes_named_in_one_report_are_bounded() -> None:
    tally = RefusalTally(window_s=1)
    for i in range(MAX_TALLY_CODES + 10):
        tally.add(f"code{i}", "x")
    report = tally.report(0.0)
    assert report is not None
    codes = report["codes"]
    assert isinstance(codes, dict) and len(codes) == MAX_TALLY_CODES + 1
    assert codes["other"] == 10
