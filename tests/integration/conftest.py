"""Fixtures for tests that run real node processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.network import Network


@pytest.fixture
def make_network(tmp_path: Path) -> Iterator[type[Network]]:
    """``make_network.create(...)``, with every node process killed at teardown."""
    created: list[Network] = []

    class Tracked(Network):
        @classmethod
        def create(cls, root: Path | None = None, *args, **kwargs) -> Network:  # type: ignore[override]
            net = Network.create(root or tmp_path / f"net{len(created)}", *args, **kwargs)
            created.append(net)
            return net

    yield Tracked
    for net in created:
        net.stop_all()
