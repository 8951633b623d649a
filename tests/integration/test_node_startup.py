"""`liaison node serve` that cannot start says why in one typed line and exits non-zero,
without a Python traceback: a busy port, an unreadable config, a missing certificate, a
database that cannot be opened. Real `liaison` processes on real files and sockets."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.network import Network, run_cli, wait_for

#: A node that cannot start exits at once; a bound on the wait all the same.
EXIT_TIMEOUT_S = 60


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = Network.create(tmp_path, node_ids=("nl",))
    try:
        yield network
    finally:
        network.stop_all()


def _serve(config: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("node", "serve", "--config", str(config), check=False,
                   timeout=EXIT_TIMEOUT_S)


def _one_typed_line(proc: subprocess.CompletedProcess[str], start: str) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(start), proc.stderr
    return errors[0]


def test_a_busy_port_is_port_in_use_with_the_address_and_a_hint(net: Network) -> None:
    node = net.nodes["nl"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", node.client_port))
        squatter.listen()
        line = _one_typed_line(_serve(node.config), "error: port_in_use: ")
    assert f"127.0.0.1:{node.client_port}" in line
    assert "[listen] client" in line  # the hint: what to change


def test_a_busy_federation_port_names_the_federation_listener(net: Network) -> None:
    node = net.nodes["nl"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", node.federation_port))
        squatter.listen()
        line = _one_typed_line(_serve(node.config), "error: port_in_use: ")
    assert f"127.0.0.1:{node.federation_port}" in line and "[listen] federation" in line


BREAKS: dict[str, tuple[Callable[[Network], Path], str]] = {
    # case: (break the network, return the config to serve; the error line's start)
    "config missing": (lambda n: n.root / "configs" / "absent.toml",
                       "error: config_error: cannot read config "),
    "config is a directory": (lambda n: _mkdir(n.root / "configs" / "dir.toml"),
                              "error: config_error: cannot read config "),
    "config not TOML": (lambda n: _write(n.nodes["nl"].config, "[node\nid = 'nl'\n"),
                        "error: config_error: config "),
    "signing certificate missing": (lambda n: _unlink(n, "nl/signing.crt"),
                                    "error: config_error: cannot read "),
    "signing key missing": (lambda n: _unlink(n, "nl/signing.key"),
                            "error: config_error: cannot read "),
    "TLS certificate missing": (lambda n: _unlink(n, "nl/tls.crt"),
                                "error: config_error: cannot load TLS certificate "),
    "CA certificate missing": (lambda n: _unlink(n, "nl/ca.crt"),
                               "error: config_error: cannot read "),
    "database is a directory": (lambda n: _database_dir(n),
                                "error: unavailable: cannot open database "),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_a_node_that_cannot_start_says_why_in_one_typed_line(net: Network, case: str) -> None:
    breaker, start = BREAKS[case]
    _one_typed_line(_serve(breaker(net)), start)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _unlink(net: Network, name: str) -> Path:
    target = net.certs / name
    assert target.is_file(), sorted(p.name for p in target.parent.iterdir())
    target.unlink()
    return net.nodes["nl"].config


def _database_dir(net: Network) -> Path:
    net.database("nl").mkdir(parents=True)
    return net.nodes["nl"].config


def test_a_started_node_has_settled_its_heap(net: Network) -> None:
    """``Node.serve`` freezes start-up's objects before it serves (heap.py): its
    ``node.started`` line says how many; none would mean ``settle_heap`` was not called."""
    node = net.start("nl")  # listening; the line follows the freeze, a moment later

    def started() -> dict[str, object] | None:
        lines = node.log.read_text(errors="replace").splitlines()
        return next((json.loads(line) for line in lines if '"node.started"' in line), None)

    try:
        line = wait_for(started, what="the node.started line")
    finally:
        net.stop_all()
    frozen = line.get("frozen_objects")
    assert isinstance(frozen, int), line
    assert frozen > 10_000, line  # the imports and start-up alone
