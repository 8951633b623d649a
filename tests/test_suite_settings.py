"""The suite's own rules hold in every test process (tests/conftest.py, docs/testing.md)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def test_hypothesis_never_times_a_property_by_the_wall_clock() -> None:
    # Four correct properties failed "input generation is slow" on a loaded 2-core machine.
    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check


def test_a_local_settings_keeps_the_suite_profile() -> None:
    local = settings(max_examples=5)
    assert local.deadline is None
    assert HealthCheck.too_slow in local.suppress_health_check
