"""`[keys] cosign_threshold`: how many other national nodes must co-sign a node key change
(core/key_change.py); checked at start-up like every config key."""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.errors import ConfigError

BASE = {"node": {"id": "nl", "data_dir": "data", "cert_dir": "certs"},
        "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"}}


def test_the_threshold_defaults_to_two_and_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    assert config.parse(BASE, path).cosign_threshold == 2
    assert config.parse({**BASE, "keys": {"cosign_threshold": 3}}, path).cosign_threshold == 3
    for bad in (0, 9, "2", 1.5, True):
        with pytest.raises(ConfigError, match=r"keys\.cosign_threshold must be"):
            config.parse({**BASE, "keys": {"cosign_threshold": bad}}, path)
    with pytest.raises(ConfigError, match="unknown keys key"):
        config.parse({**BASE, "keys": {"threshold": 2}}, path)
