"""Suite-wide set-up (docs/testing.md):

- each pytest process (one, or each pytest-xdist worker) picks node ports from a range of
  its own, below the kernel's ephemeral range, so two workers, or a worker and an outgoing
  connection, never pick the same port;
- a drill's long form (marked ``long``) runs only with ``--long``; `make test` runs each
  drill's short form;
- the test files reach the xdist workers longest first (tests/schedule.py);
- hypothesis never judges by the wall clock (no per-example deadline, no "too slow" health
  check): on a loaded machine both failed properties that were correct."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from liaison_net.drills import harness
from tests import schedule

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

#: The lowest port the suite picks; the range up to the kernel's ephemeral floor is split
#: evenly between the workers.
PORTS_FROM = 10_000


def worker_ports(worker: str | None, workers: int, floor: int) -> range:
    """The ports of worker ``gwN`` of ``workers`` (all of them when not under xdist)."""
    if worker is None or not worker.startswith("gw"):
        return range(PORTS_FROM, floor)
    span = (floor - PORTS_FROM) // max(workers, 1)
    index = int(worker[2:])
    return range(PORTS_FROM + index * span, PORTS_FROM + (index + 1) * span)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="also run the drills' long forms (tests marked `long`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--long"):
        long = [item for item in items if item.get_closest_marker("long") is not None]
        if long:
            config.hook.pytest_deselected(items=long)
            items[:] = [item for item in items if item.get_closest_marker("long") is None]
    items[:] = schedule.longest_first(items)


def pytest_configure(config: pytest.Config) -> None:
    # xdist hands out files in the order collected (longest first, tests/schedule.py), not
    # reordered by their number of tests.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    # Exported: a bench or drill a test runs as a subprocess picks from the same range.
    harness.export_port_range(worker_ports(os.environ.get("PYTEST_XDIST_WORKER"),
                                        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
                                        harness.ephemeral_port_floor()))
