"""One way in: only the store (liaison_net/store/) talks to the database library, so the
node, the admin CLI and the drills all reach a node's data through store classes, and a
PostgreSQL backend beside SQLite serves every one of them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "liaison_net"
DATABASE_LIBRARIES = {"sqlite3", "aiosqlite", "psycopg"}
#: Modules outside store/ allowed a database library, each with its reason.
ALLOWED = {
    # Measures SQLite itself (commit rates, aiosqlite's thread hop) on a scratch file of
    # its own, never a node's database: the engine's ceiling, not our data.
    "bench/ceiling.py",
    # Makes a throwaway PostgreSQL server for tests and drills and creates empty databases
    # on it; a node's data on it is reached through store/postgres.py only.
    "drills/pg_cluster.py",
}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def database_users(package: Path) -> set[str]:
    """Modules (relative to ``package``) that import sqlite3 or aiosqlite, anywhere in
    the module (function-level imports included)."""
    return {path.relative_to(package).as_posix() for path in package.rglob("*.py")
            if _imported_roots(path) & DATABASE_LIBRARIES}


def test_only_the_store_imports_a_database_library() -> None:
    outside = {m for m in database_users(PACKAGE) if not m.startswith("store/")}
    assert outside - ALLOWED == set(), (
        f"{sorted(outside - ALLOWED)} import sqlite3/aiosqlite: add a method to a store "
        "class (liaison_net/store/) and call that instead")


def test_the_allowed_exceptions_still_need_their_exception() -> None:
    """A module that no longer imports a database library leaves the allow list."""
    assert database_users(PACKAGE) >= ALLOWED


def test_the_check_sees_imports() -> None:
    """Guard against a vacuous check: the store's own imports are found."""
    users = database_users(PACKAGE)
    assert {"store/sqlite.py", "store/maintenance.py", "store/observe.py"} <= users
