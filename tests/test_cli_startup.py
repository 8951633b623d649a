"""`liaison --help` imports no command module (structural, not timed), and the help it
prints from main.py's table is what the commands themselves say."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from liaison_net.cli import main as cli_main
from liaison_net.client import keystore
from liaison_net.drills.harness import free_ports
from liaison_net.pki import certificates

HEAVY = ("aiohttp", "nacl", "aiosqlite", "cryptography", "rich", "msgpack")

PROBE = """
import sys
sys.argv = ["liaison", *sys.argv[1:]]
from liaison_net.cli.main import main
try:
    main()
except SystemExit:
    pass
print("LOADED", " ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded_after(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("LOADED"))
    return set(line.split()[1:])


def test_help_imports_no_heavy_module() -> None:
    """aiohttp, PyNaCl, aiosqlite, cryptography, rich and msgpack stay unimported: the
    command list comes from main.py's table, not from the command modules."""
    assert _loaded_after("--help") == set()
    assert _loaded_after("--version") == set()


def test_send_help_does_not_import_the_http_client() -> None:
    """`liaison send --help` loads the officer commands, but not aiohttp (NodeSession is
    imported where a command talks to the node)."""
    assert "aiohttp" not in _loaded_after("send", "--help")


def test_help_lists_every_command_with_its_own_help() -> None:
    """The lazy listing equals the eager one: each table entry's help is the first
    paragraph of the command's docstring, so `liaison --help` cannot drift."""

    def listing(load: bool) -> str:
        group = cli_main.LazyGroup(name="liaison")
        for name in cli_main._COMMANDS if load else ():
            group.add_command(cli_main.load(name), name)
        return group.get_help(click.Context(group, info_name="liaison"))

    lazy = listing(load=False)
    assert "send" in lazy and "Seal a message" in lazy
    assert listing(load=True) == lazy
    for name in cli_main._COMMANDS:
        command = cli_main.load(name)
        first = " ".join((command.short_help or command.help or "").split("\n\n")[0].split())
        assert cli_main._COMMANDS[name][1] == first, name


@pytest.mark.parametrize("name", sorted(cli_main._COMMANDS))
def test_each_command_resolves_and_shows_its_help(name: str) -> None:
    result = CliRunner().invoke(cli_main.cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


SERVER_STACK = ("aiohttp.web", "aiosqlite", "structlog", "liaison_net.store",
                "liaison_net.services", "liaison_net.node", "liaison_net.federation",
                "liaison_net.officer_api", "liaison_net.admin_api", "liaison_net.drills")

SERVER_PROBE = """
import sys
sys.argv = ["liaison", *sys.argv[1:]]
from liaison_net.cli.main import main
try:
    main()
except SystemExit:
    pass
print("LOADED", " ".join(sorted(m for m in sys.modules if m.startswith({stack!r}))))
"""


@pytest.mark.parametrize("command", [("inbox",), ("send", "--to", "nl/mbakker", "--subject",
                                      "s", "--text", "t", "--handling", "H0", "--tlp",
                                      "AMBER", "--purpose", "p"), ("logout",)])
def test_officer_commands_import_no_server_stack(tmp_path: Path,
                                                 command: tuple[str, ...]) -> None:
    """An officer command, run to the point where it talks to its node (a closed port
    here; tests/integration/test_cli_session_cache.py runs `inbox` against a real one),
    loads the client and never the node's side: aiohttp's server, the store, services,
    federation, officer API, node, or structlog."""
    ca = certificates.init_network(tmp_path / "certs", now=datetime.now(UTC)).ca_cert
    keystore.create(tmp_path / "o.keystore", "nl/jdevries", "Jan", "liaison officer",
                    f"https://127.0.0.1:{free_ports(1)[0]}", ca.read_bytes(), b"passphrase1")
    done = subprocess.run(
        [sys.executable, "-c", SERVER_PROBE.format(stack=SERVER_STACK), *command,
         "--keystore", str(tmp_path / "o.keystore")], capture_output=True, text=True,
        timeout=120, env={**os.environ, "LIAISON_PASSPHRASE": "passphrase1"}, check=True)
    assert "unavailable" in done.stderr or command == ("logout",), done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    assert line.split()[1:] == []
