"""`liaison chaos --store postgresql`: the soak's four nodes on a throwaway PostgreSQL
cluster, SIGKILLs and partitions under traffic, then every envelope counted in PostgreSQL:
none lost, none twice, every effect once, every audit chain intact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from liaison_net.chaos.soak import Soak, SoakOptions
from liaison_net.store.observe import PgDatabase

pytestmark = pytest.mark.slow


@pytest.fixture
def make_soak() -> Iterator[Callable[[SoakOptions, Path], Soak]]:
    """Soaks whose nodes and PostgreSQL are stopped at teardown, by PID, pass or fail."""
    made: list[Soak] = []

    def make(options: SoakOptions, root: Path) -> Soak:
        soak = Soak(options, root)
        made.append(soak)
        return soak

    yield make
    for soak in made:
        soak.net.stop_all()
        if soak.cluster is not None:
            soak.cluster.destroy()


async def test_a_soak_on_postgresql_loses_and_duplicates_nothing(
        tmp_path: Path, make_soak: Callable[[SoakOptions, Path], Soak]) -> None:
    soak = make_soak(SoakOptions(kills=2, partitions=2, duration_s=16.0, seed=17, rate=6.0,
                                 officers_per_node=1, drain_timeout_s=60.0,
                                 setup_timeout_s=90.0, store="postgresql"), tmp_path)
    doc = await soak.run()
    assert doc["failures"] == [], doc["failures"]
    assert doc["ok"] and doc["options"]["store"] == "postgresql"
    assert all(isinstance(where, PgDatabase) for where in soak.databases().values())
    f = doc["figures"]
    assert f["accepted"] > 20 and f["kills"] >= 2
    assert soak.cluster is None  # stopped with the nodes
