"""The drill offset is an option checked at start-up (issue 13, item 5).

A node reads it from `[clock] drill_offset_ms` in its config (or `--clock-offset-ms`), the
CLI from `--clock-offset-ms` or LIAISON_CLOCK_OFFSET_MS; a bad value is one clear line
naming the option and exit 2, never a traceback. The skew drill itself, with real nodes,
is tests/integration/test_clock_skew.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.clock import MAX_OFFSET_MS, OFFSET_ENV
from liaison_net.errors import ConfigError
from tests.integration.network import run_cli

BASE = {"node": {"id": "nl", "data_dir": "data", "cert_dir": "certs"},
        "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"}}


def test_config_clock_section_sets_the_drill_offset(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    assert config.parse(BASE, path).clock_offset_ms == 0
    assert config.parse({**BASE, "clock": {"drill_offset_ms": -180_000}},
                        path).clock_offset_ms == -180_000
    for bad, words in ((MAX_OFFSET_MS + 1, "within"), ("10min", "integer"), (1.5, "integer")):
        with pytest.raises(ConfigError, match=f"clock.drill_offset_ms must be.*{words}"):
            config.parse({**BASE, "clock": {"drill_offset_ms": bad}}, path)
    with pytest.raises(ConfigError, match="unknown clock key"):
        config.parse({**BASE, "clock": {"offset_ms": 1}}, path)


def _refused(proc_stderr: str, *words: str) -> None:
    assert "Traceback" not in proc_stderr, proc_stderr
    for word in words:
        assert word in proc_stderr, proc_stderr


def test_cli_refuses_a_bad_offset_option_or_environment_cleanly() -> None:
    proc = run_cli("--clock-offset-ms", "3min", "inbox", check=False)
    assert proc.returncode == 2
    _refused(proc.stderr, "--clock-offset-ms", "3min")
    proc = run_cli("inbox", check=False, env={OFFSET_ENV: str(MAX_OFFSET_MS + 1)})
    assert proc.returncode == 2
    _refused(proc.stderr, "--clock-offset-ms", str(MAX_OFFSET_MS + 1))


def test_node_refuses_a_bad_configured_offset_at_start(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    path.write_text('[node]\nid = "nl"\ndata_dir = "data"\ncert_dir = "certs"\n\n'
                    '[listen]\nfederation = "127.0.0.1:7001"\nclient = "127.0.0.1:7002"\n\n'
                    f'[clock]\ndrill_offset_ms = {MAX_OFFSET_MS + 1}\n')
    proc = run_cli("node", "serve", "--config", str(path), check=False, timeout=30)
    assert proc.returncode == 2
    _refused(proc.stderr, "error: config_error: clock.drill_offset_ms must be within")
    proc = run_cli("node", "serve", "--config", str(path), "--clock-offset-ms", "1e3",
                   check=False, timeout=30)
    assert proc.returncode == 2
    _refused(proc.stderr, "--clock-offset-ms")
