"""Put a node of a test network on PostgreSQL: its config's ``[store]`` names a fresh
database of the session's cluster, with the password in a 0600 file (never in the TOML)."""

from __future__ import annotations

import os
import shutil
import tomllib

import tomli_w

from liaison_net.drills.pg_cluster import Cluster
from tests.integration.network import Network
from tests.store_backends import pg_backend


def on_postgresql(net: Network, nid: str, cluster: Cluster) -> str:
    """Rewrite ``nid``'s config for a new database on ``cluster``; its DSN."""
    config = net.nodes[nid].config
    password_file = config.parent / f"{nid}-pg-password"
    shutil.copyfile(cluster.password_file, password_file)
    os.chmod(password_file, 0o600)
    data = tomllib.loads(config.read_text())
    dsn = pg_backend(cluster).dsn
    data["store"] = {**data.get("store", {}), "backend": "postgresql", "dsn": dsn,
                     "password_file": password_file.name}
    config.write_text(tomli_w.dumps(data))
    return dsn


