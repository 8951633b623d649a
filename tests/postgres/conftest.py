"""The store's backends as fixtures for the tests here (tests/store_backends.py): the
contract suite runs on SQLite and on a real PostgreSQL, and nodes run on PostgreSQL."""

from tests.integration.conftest import make_network  # noqa: F401  (a fixture)
from tests.store_backends import (  # noqa: F401  (fixtures, found by name)
    backend_name,
    cluster_for,
    make_store,
    pg_cluster,
)
