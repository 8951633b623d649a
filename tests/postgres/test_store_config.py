"""[store] for PostgreSQL: the password never in the TOML, the password file private,
the SQLite-only quota refused; a SQLite node takes no PostgreSQL keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.errors import ConfigError
from liaison_net.store.postgres import PASSWORD_ENV, read_password

BASE = """
[node]
id = "nl"
data_dir = "data"
cert_dir = "certs"

[listen]
federation = "127.0.0.1:7001"
client = "127.0.0.1:7002"

[[peers]]
id = "be"
url = "https://127.0.0.1:7003"
"""


def _load(tmp_path: Path, store: str) -> config.NodeConfig:
    path = tmp_path / "nl.toml"
    path.write_text(BASE + "\n[store]\n" + store)
    return config.load(path)


def _secret(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "pg-password"
    path.write_text("s3cret\n")
    os.chmod(path, mode)
    return path


def test_a_postgresql_store_with_its_password_in_a_private_file(tmp_path: Path) -> None:
    _secret(tmp_path)
    cfg = _load(tmp_path, 'backend = "postgresql"\ndsn = "host=db dbname=nl user=nl"\n'
                          'password_file = "pg-password"\n')
    assert cfg.store.postgresql and cfg.store.password_file == tmp_path / "pg-password"
    assert read_password(cfg.store.password_file) == "s3cret"


@pytest.mark.parametrize("dsn", ["host=db dbname=nl user=nl password=hunter2",
                                 "postgresql://nl:hunter2@db/nl"])
def test_a_password_in_the_dsn_is_refused(tmp_path: Path, dsn: str) -> None:
    with pytest.raises(ConfigError, match="holds a password") as caught:
        _load(tmp_path, f'backend = "postgresql"\ndsn = "{dsn}"\n')
    assert "hunter2" not in str(caught.value)


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    _secret(tmp_path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        _load(tmp_path, 'backend = "postgresql"\ndsn = "host=db"\n'
                        'password_file = "pg-password"\n')


def test_the_password_may_come_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    cfg = _load(tmp_path, 'backend = "postgresql"\ndsn = "host=db"\n')
    assert read_password(cfg.store.password_file) == "from-env"


@pytest.mark.parametrize(("store", "message"), [
    ('backend = "postgresql"\ndsn = "host=db"\nmax_db_mb = 10\n', "SQLite only"),
    ('backend = "postgresql"\n', "store.dsn"),
    ('dsn = "host=db"\n', "need store.backend"),
    ('backend = "mysql"\n', "store.backend must be"),
])
def test_mismatched_store_settings_are_refused(tmp_path: Path, store: str,
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, store)


async def test_an_unreachable_server_is_a_typed_error(tmp_path: Path) -> None:
    from liaison_net.drills.pg_cluster import free_port
    from liaison_net.errors import Unavailable
    from liaison_net.store.node_store import NodeStore
    from liaison_net.store.postgres import PostgresBackend

    store = NodeStore(None, "nl", backend=PostgresBackend(
        f"host=127.0.0.1 port={free_port()} dbname=nl user=nl connect_timeout=2",
        password_file=_secret(tmp_path)))
    with pytest.raises(Unavailable, match="cannot open database postgresql"):
        await store.open()
    await store.close()
