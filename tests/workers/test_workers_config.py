"""`[workers] verify` in a node's config: 0 (the default: verification in the node's own
process) to 8 worker processes, or "auto" (one worker on a machine with two cores or more,
none on one); anything else is a ConfigError naming the key. `verify_timeout_s` bounds a
worker's answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.errors import ConfigError

BASE = {"node": {"id": "nl", "data_dir": "data", "cert_dir": "certs"},
        "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"}}


def test_workers_verify_is_zero_to_eight(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    auto = config.auto_verify_workers(os.cpu_count())
    assert config.parse(BASE, path).verify_workers == 0
    assert config.parse({**BASE, "workers": {"verify": "auto"}}, path).verify_workers == auto
    assert [config.auto_verify_workers(n) for n in (None, 1, 2, 64)] == [0, 0, 1, 1]
    assert config.parse({**BASE, "workers": {"verify": 0}}, path).verify_workers == 0
    assert config.parse({**BASE, "workers": {"verify": 2}}, path).verify_workers == 2
    assert config.parse({**BASE, "workers": {"verify": 8}}, path).verify_workers == 8
    for bad in (9, -1, 1.5, "2", "all", True):
        with pytest.raises(ConfigError, match=r"workers\.verify must be"):
            config.parse({**BASE, "workers": {"verify": bad}}, path)
    with pytest.raises(ConfigError, match="unknown workers key"):
        config.parse({**BASE, "workers": {"api": 2}}, path)


def test_workers_verify_timeout_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    assert config.parse(BASE, path).verify_timeout_s == 10.0
    timeout = {**BASE, "workers": {"verify_timeout_s": 2.5}}
    assert config.parse(timeout, path).verify_timeout_s == 2.5
    for bad in (0, 0.1, 121, "10", True):
        with pytest.raises(ConfigError, match=r"workers\.verify_timeout_s must be"):
            config.parse({**BASE, "workers": {"verify_timeout_s": bad}}, path)
