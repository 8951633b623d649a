"""`[workers] verify` in a node's config: 0 (the default, verification in the node's own
process, as before) to 8 worker processes; anything else is a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.errors import ConfigError

BASE = {"node": {"id": "nl", "data_dir": "data", "cert_dir": "certs"},
        "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"}}


def test_workers_verify_is_zero_to_eight(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    assert config.parse(BASE, path).verify_workers == 0
    assert config.parse({**BASE, "workers": {"verify": 2}}, path).verify_workers == 2
    assert config.parse({**BASE, "workers": {"verify": 8}}, path).verify_workers == 8
    for bad in (9, -1, 1.5, "2", True):
        with pytest.raises(ConfigError, match=r"workers\.verify must be"):
            config.parse({**BASE, "workers": {"verify": bad}}, path)
    with pytest.raises(ConfigError, match="unknown workers key"):
        config.parse({**BASE, "workers": {"api": 2}}, path)
