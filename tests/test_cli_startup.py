"""`liaison --help` imports no command module (structural, not timed), and the help it
prints from main.py's table is what the commands themselves say. The same for `liaison
admin`: its groups list from their tables, and a command imports only what it uses (the
suite starts admin commands by the hundred; docs/testing.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from liaison_net import config as config_mod
from liaison_net.cli import admin as admin_cli
from liaison_net.cli import admin_keys, admin_officers, commands
from liaison_net.cli import main as cli_main
from liaison_net.client import keystore
from liaison_net.drills.harness import free_ports, write_node_config
from liaison_net.pki import certificates
from liaison_net.store.node_store import NodeStore

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


# --- `liaison admin`: one sub-command's module, and only what that command uses ----------

#: The node's side, which no admin command below needs: aiohttp (its server and client),
#: the services, the doors (the admin door's routes; its wire.py is the CLI's too), the
#: node, its supervisor and metrics, and the drills.
NODE_SIDE = ("aiohttp", "liaison_net.services", "liaison_net.node", "liaison_net.supervisor",
             "liaison_net.federation", "liaison_net.officer_api", "liaison_net.admin_api.routes",
             "liaison_net.drills", "liaison_net.metrics", "prometheus_client")
#: And the store (aiosqlite, structlog, which the store's modules log with).
NODE_AND_STORE = (*NODE_SIDE, "aiosqlite", "structlog", "liaison_net.store")

ADMIN_TABLES = {("admin",): admin_cli._ADMIN_COMMANDS,
                ("admin", "keys"): admin_keys._COSIGN_COMMANDS,
                ("admin", "audit"): admin_officers._AUDIT_COMMANDS}


def _loaded(stack: tuple[str, ...], *args: str, cwd: Path | None = None) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SERVER_PROBE.format(stack=stack), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    return line.split()[1:]


def test_admin_help_imports_no_heavy_module() -> None:
    """`liaison admin --help` lists the sub-commands from admin.py's table: no other admin
    module, hence none of aiohttp, PyNaCl, aiosqlite, cryptography, rich or msgpack."""
    assert _loaded_after("admin", "--help") == set()
    assert _loaded(("liaison_net.cli.admin_",), "admin", "--help") == []


@pytest.mark.parametrize(("group", "listed"), [
    ("keys", ("liaison_net.cli.admin_cosign",)),
    ("audit", ("liaison_net.cli.admin_audit", "liaison_net.cli.admin_audit_export"))])
def test_admin_subgroup_help_imports_its_own_module_only(group: str,
                                                         listed: tuple[str, ...]) -> None:
    """`admin keys --help` and `admin audit --help` import the module that defines the
    group, not those of its lazily listed sub-commands, and nothing of the node's side."""
    assert _loaded(listed, "admin", group, "--help") == []
    assert _loaded(NODE_AND_STORE, "admin", group, "--help") == []


@pytest.mark.parametrize("args", [("admin", "revoke", "--help"),
                                  ("admin", "audit", "verify", "--help"),
                                  ("admin", "keys", "cosign", "--help")])
def test_admin_command_help_imports_no_node_side(args: tuple[str, ...]) -> None:
    """A sub-command's --help imports its module, which imports neither the store nor the
    node's side: those come in the command's body, when it runs."""
    assert _loaded(NODE_AND_STORE, *args) == []


def test_admin_pki_commands_import_no_store_or_node_side(tmp_path: Path) -> None:
    """`init-network` and `init-node`, which every test network runs (network.py), load
    cryptography to sign and nothing of the store or the node's side."""
    certs = str(tmp_path / "certs")
    assert _loaded(NODE_AND_STORE, "admin", "init-network", "--dir", certs) == []
    assert _loaded(NODE_AND_STORE, "admin", "init-node", "nl", "--dir", certs,
                   "--ca-dir", certs) == []
    assert (tmp_path / "certs" / "nl" / certificates.SIGNING_CERT_FILE).is_file()


def test_admin_store_reads_import_no_node_side(tmp_path: Path) -> None:
    """`admin status` and `admin keys list` read the node's store (aiosqlite and the store
    are theirs to load) without aiohttp, the services, the doors or the supervisor, nor
    structlog, which the store imports when it first logs (lazy_log.py): the node is not
    running here, so nothing is asked over its admin socket."""
    certs = tmp_path / "certs"
    certificates.init_network(certs, now=datetime.now(UTC))
    certificates.init_node(certs, "nl", ca_dir=certs, now=datetime.now(UTC))
    config = tmp_path / "node_configs" / "nl.toml"
    write_node_config(config, "nl", federation_port=free_ports(1)[0],
                      client_port=free_ports(1)[0], peers={})
    cfg = config_mod.load(config)

    async def create() -> None:
        store = NodeStore.for_config(cfg)
        await store.open()
        await store.close()

    asyncio.run(create())
    for args in (("status",), ("keys", "list"), ("revocations",), ("audit", "verify")):
        loaded = _loaded((*NODE_SIDE, "structlog", "liaison_net.store"), "admin", *args,
                         "--config", str(config))
        assert "liaison_net.store.node_store" in loaded, args  # it did read the store
        assert [m for m in loaded if not m.startswith("liaison_net.store")] == [], args


@pytest.mark.parametrize("path", sorted(ADMIN_TABLES))
def test_admin_tables_list_each_command_with_its_own_help(path: tuple[str, ...]) -> None:
    """Each admin table's help is the first paragraph of the command's docstring, and the
    group's lazy listing equals the one with every command imported."""
    table = ADMIN_TABLES[path]
    group = cli_main.load("admin")
    for name in path[1:]:
        found = group.get_command(click.Context(group), name)
        assert isinstance(found, commands.LazyGroup)
        group = found
    assert isinstance(group, commands.LazyGroup) and group.lazy == table
    fresh = commands.LazyGroup(name=group.name, lazy=table)
    for name, command in group.commands.items():
        if name not in table:
            fresh.add_command(command, name)
    lazy = fresh.get_help(click.Context(fresh, info_name=" ".join(path)))
    for name in table:
        command = commands.load_lazy(table, name)
        first = " ".join((command.short_help or command.help or "").split("\n\n")[0].split())
        assert table[name][1] == first, name
        fresh.add_command(command, name)
    assert fresh.get_help(click.Context(fresh, info_name=" ".join(path))) == lazy
    assert all(name in lazy for name in table)


@pytest.mark.parametrize("args", [(*path, name) for path, table in sorted(ADMIN_TABLES.items())
                                  for name in sorted(table)])
def test_each_admin_command_resolves_and_shows_its_help(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli_main.cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
