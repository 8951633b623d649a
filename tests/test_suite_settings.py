"""The suite's own rules hold in every test process (tests/conftest.py, docs/testing.md),
and its files are scheduled longest first (tests/schedule.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

from tests import schedule


def test_hypothesis_never_times_a_property_by_the_wall_clock() -> None:
    # Four correct properties failed "input generation is slow" on a loaded 2-core machine.
    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check


def test_a_local_settings_keeps_the_suite_profile() -> None:
    local = settings(max_examples=5)
    assert local.deadline is None
    assert HealthCheck.too_slow in local.suppress_health_check


@dataclass
class _Item:
    nodeid: str
    slow: bool = False

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


def test_files_reach_the_workers_longest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured files by their seconds, others by what they run; a file's tests stay
    together and in order (xdist's loadfile hands out whole files in this order)."""
    monkeypatch.setattr(schedule, "MEASURED_S", {"tests/test_b.py": 90.0,
                                                 "tests/integration/test_c.py": 5.0})
    items = [_Item("tests/test_a.py::one"), _Item("tests/test_b.py::one"),
             _Item("tests/integration/test_c.py::one"), _Item("tests/test_a.py::two"),
             _Item("tests/integration/test_d.py::one"), _Item("tests/test_e.py::one", slow=True),
             _Item("tests/test_b.py::two[x]")]
    assert [i.nodeid for i in schedule.longest_first(items)] == [
        "tests/test_b.py::one", "tests/test_b.py::two[x]",
        "tests/integration/test_d.py::one", "tests/test_e.py::one",
        "tests/integration/test_c.py::one", "tests/test_a.py::one", "tests/test_a.py::two"]


def test_the_suite_runs_in_the_order_of_its_schedule(request: pytest.FixtureRequest) -> None:
    """xdist keeps the collected order instead of sorting files by their number of tests."""
    if hasattr(request.config.option, "loadscopereorder"):
        assert request.config.option.loadscopereorder is False
