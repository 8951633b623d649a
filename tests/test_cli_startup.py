"""`liaison --help` imports no command module (structural, not timed), and the help it
prints from main.py's table is what the commands themselves say."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from liaison_net.cli import main as cli_main

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
