"""A short chaos soak on four real nodes: SIGKILLs and partitions under continuous traffic,
then every envelope, and every effect it owes (evidence, notices, due times, receipts),
accounted for from the nodes' own SQLite files.

The long run (about a hundred kills and partitions) is `liaison chaos`, by hand; this one
is short enough for CI on two shared cores and still has to see every fault happen.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from liaison_net.chaos.check import Outcome
from liaison_net.chaos.soak import NODE_IDS, Soak, SoakOptions
from liaison_net.demo.network import Deadline

pytestmark = pytest.mark.slow

#: The short form (`make test`) and the long one (`pytest --long`, docs/testing.md):
#: kills, partitions, seconds of chaos.
FORMS = [pytest.param((4, 4, 28.0), id="short"),
         pytest.param((12, 12, 120.0), id="long", marks=pytest.mark.long)]


@pytest.fixture
def make_soak() -> Iterator[Callable[[SoakOptions, Path], Soak]]:
    """Soaks whose node processes are stopped at teardown, by PID, pass or fail."""
    made: list[Soak] = []

    def make(options: SoakOptions, root: Path) -> Soak:
        soak = Soak(options, root)
        made.append(soak)
        return soak

    yield make
    for soak in made:
        soak.net.stop_all()  # SIGTERM, then SIGKILL, each process it started (Popen, by PID)
        for node in soak.net.nodes.values():
            assert not node.running(), f"node {node.id} (pid {node.pid}) outlived the test"


def inbox_ids(database: Path) -> set[bytes]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return {bytes(r[0]) for r in db.execute("SELECT envelope_id FROM inbox")}


@pytest.mark.parametrize("form", FORMS)
async def test_soak_loses_and_duplicates_nothing(
        tmp_path: Path, make_soak: Callable[[SoakOptions, Path], Soak],
        form: tuple[int, int, float]) -> None:
    kills, partitions, duration_s = form
    soak = make_soak(SoakOptions(kills=kills, partitions=partitions, duration_s=duration_s,
                                 seed=2024,
                                 rate=8.0, officers_per_node=1, drain_timeout_s=60.0,
                                 setup_timeout_s=90.0), tmp_path)
    doc = await soak.run()
    f = doc["figures"]
    assert doc["failures"] == [], doc["failures"]
    assert doc["ok"]

    # The faults really happened, and traffic met them.
    assert f["kills"] >= kills and f["partitions"] >= partitions
    assert sum(n["kills"] for n in doc["nodes"].values()) == f["kills"]
    assert f["accepted_while_destination_down"] > 0
    assert f["accepted_while_link_cut"] > 0
    assert f["accepted"] > 50 and f["refused"] > 0

    # Every effect owed was found exactly once where it belongs (the verdict above holds
    # them too; here, that the traffic really owed each kind the workload builds).
    by_kind = f["effects_by_kind"]
    for kind in ("accepted", "relayed", "due", "disclosure"):
        assert by_kind[kind]["owed"] > 0, kind
        assert by_kind[kind]["found"] == by_kind[kind]["owed"], (kind, doc["examples"])
    assert by_kind["accepted"]["owed"] == f["accepted"] + f["unanswered_held"]
    assert f["effects_missing"] == f["effects_twice"] == f["effects_unowed"] == 0

    # Nothing accepted lost, nothing duplicated, every chain intact, memory bounded.
    assert f["lost"] == 0 and f["duplicated"] == 0
    assert f["delivered_copies"] == f["expected_copies"] > f["accepted"]
    for nid, node in doc["nodes"].items():
        assert node["audit_ok"], nid
        assert 0 < node["max_rss_mb"] < 400, nid
        assert node["outbox"].get("queued", 0) == 0, nid

    # Independently of check.py: refused envelopes are in no inbox of any node ...
    delivered = set().union(*(inbox_ids(soak.net.database(nid)) for nid in NODE_IDS))
    refused = {s.id for s in soak.ledger if s.outcome is Outcome.REFUSED}
    assert refused and not refused & delivered
    assert {s.id for s in soak.ledger if s.outcome is Outcome.ACCEPTED} <= delivered
    # ... and the administrator's own command verifies every chain.
    verified = soak.net.audit_verify(Deadline(60))
    assert all(result.get("ok") for result in verified.values()), verified
