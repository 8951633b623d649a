"""[store]: where the node keeps its data and how it may grow: SQLite (the default) with an
optional quota, or PostgreSQL (issue 17, docs/operations.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liaison_net.config.fields import _num, _str
from liaison_net.errors import ConfigError

STORE_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StoreConfig:
    """[store]: where the node keeps its data and how it may grow (storage faults, issue 9;
    PostgreSQL, issue 17, docs/operations.md)."""

    max_db_mb: float | None = None  # a quota: past it writes are refused 503, nothing acked
    retention_sweep_s: float = 60.0  # how often envelopes past retain_until are purged
    backend: str = "sqlite"  # or "postgresql"
    dsn: str | None = None  # postgresql: a libpq connection string or URL, no password
    password_file: Path | None = None  # postgresql: the password, a 0600 file

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"


def _store_config(table: dict[str, Any], base: Path = Path(".")) -> StoreConfig:
    if unknown := set(table) - {"max_db_mb", "retention_sweep_s", "backend", "dsn",
                                "password_file"}:
        raise ConfigError(f"unknown store key(s): {', '.join(sorted(unknown))}")
    quota = table.get("max_db_mb")
    backend = table.get("backend", "sqlite")
    if backend not in STORE_BACKENDS:
        raise ConfigError(f"store.backend must be one of {', '.join(STORE_BACKENDS)}, "
                          f"not {str(backend)[:40]!r}")
    dsn: str | None = None
    password_file: Path | None = None
    if backend == "postgresql":
        # Imported here: only a PostgreSQL node loads the driver.
        from liaison_net.store.postgres import check_dsn, check_password_file

        if quota is not None:
            raise ConfigError("store.max_db_mb is for SQLite only: on PostgreSQL, give the "
                              "database its own volume or tablespace and watch that")
        dsn = check_dsn(_str(table, "store.dsn", "dsn"))
        if "password_file" in table:
            password_file = check_password_file(
                base / _str(table, "store.password_file", "password_file"))
    elif "dsn" in table or "password_file" in table:
        raise ConfigError("store.dsn and store.password_file need store.backend = "
                          "\"postgresql\"")
    return StoreConfig(max_db_mb=None if quota is None
                       else _num(table, "store.max_db_mb", 0, 0.1, 1_000_000),
                       retention_sweep_s=_num(table, "store.retention_sweep_s", 60.0, 0.1,
                                              3600),
                       backend=backend, dsn=dsn, password_file=password_file)
