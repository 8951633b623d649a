"""The store's two backends as pytest fixtures: ``make_store`` runs a test once on a SQLite
file and once on a real PostgreSQL (a throwaway cluster per test session, one fresh
database per store; ``liaison_net/drills/pg_cluster.py``).

The PostgreSQL run is never skipped: if the server is not installed, the test fails and
says how to install it (`make postgresql`, which `make test` runs).

A directory's conftest imports the fixtures (tests/postgres/conftest.py)."""

from __future__ import annotations

import atexit
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from liaison_net.drills.pg_cluster import Cluster, ClusterError, make_cluster
from liaison_net.store.node_store import NodeStore
from liaison_net.store.postgres import PostgresBackend

BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count(1)

StoreFactory = Callable[[str], Awaitable[NodeStore]]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL cluster for this test process, stopped by PID at the end (also
    when a test failed)."""
    try:
        cluster = make_cluster()
    except ClusterError as exc:
        pytest.fail(f"no PostgreSQL for the store's contract suite: {exc}")
    atexit.register(cluster.destroy)  # also if the session ends without its teardown
    try:
        yield cluster
    finally:
        cluster.destroy()


def pg_backend(cluster: Cluster) -> PostgresBackend:
    """A backend on a new, empty database of ``cluster``."""
    dsn = cluster.create_database(f"store_{next(_names)}")
    return PostgresBackend(dsn, password_file=cluster.password_file)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cluster_for(backend_name: str, request: pytest.FixtureRequest) -> Cluster | None:
    """The session's cluster when this test runs on PostgreSQL (started on first use)."""
    if backend_name != "postgresql":
        return None
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster


@pytest.fixture
async def make_store(cluster_for: Cluster | None,
                     tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """``await make_store(node_id)``: an open store on this test's backend (closed at the
    end of the test). Calling it twice gives two handles on the same database (a
    reopen, as after a restart)."""
    opened: list[NodeStore] = []
    backend_for: dict[str, PostgresBackend] = {}

    async def make(node_id: str) -> NodeStore:
        if cluster_for is None:
            store = NodeStore(tmp_path / f"{node_id}.sqlite3", node_id)
        else:
            if node_id not in backend_for:
                backend_for[node_id] = pg_backend(cluster_for)
            first = backend_for[node_id]
            store = NodeStore(None, node_id, backend=PostgresBackend(
                first.dsn, password_file=first.password_file))
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
