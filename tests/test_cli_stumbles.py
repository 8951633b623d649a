"""What a new user of `liaison` stumbled on (issue 20), each gone: the passphrase option
before the environment, a typed error instead of a prompt no one can answer, errors that
name the option to add, every missing option in one message, whole ids and cells when
the output is not a terminal, the inbox by precedence with `held` explained, and a backup
that is one file. No node runs: the keystore's node URL is a closed port, so
`unavailable` proves a command got past the keystore and its own checks."""

# ruff: noqa: F811
# (F811: the `run` and `network` fixtures are imported from test_officer_cli_offline and
# named again as test parameters, which is how pytest hands fixtures over.)

from __future__ import annotations

import asyncio
import io
import os
import subprocess

import pytest
from rich.console import Console

from liaison_net.cli import officer_view, tables
from liaison_net.client.answers import InboxEntry
from liaison_net.drills.harness import LIAISON
from liaison_net.store.node_store import NodeStore
from tests.test_officer_cli_offline import (  # noqa: F401  (fixtures)
    PASSPHRASE,
    SEND,
    Network,
    Run,
    _init_officer,
    network,
    run,
)

UNAVAILABLE = "error: unavailable: cannot reach node"

# --- 1. the passphrase: the option given, then the environment, then the terminal ---------


def test_passphrase_file_comes_before_the_environment(
        run: Run, network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    """$LIAISON_PASSPHRASE exported (as the README says) and wrong for this keystore: the
    file given on the command line still opens it."""
    ks_path, _, _ = _init_officer(run, network)
    secret = network.root / "pass.txt"
    secret.write_text(PASSPHRASE + "\n")
    monkeypatch.setenv("LIAISON_PASSPHRASE", "the passphrase of another keystore")
    result = run("inbox", "--keystore", ks_path, "--passphrase-file", secret)
    assert result.err.startswith(UNAVAILABLE), result.err


def test_passphrase_fd_comes_before_the_environment(
        run: Run, network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    read_end, write_end = os.pipe()
    os.write(write_end, PASSPHRASE.encode() + b"\n")
    os.close(write_end)
    monkeypatch.setenv("LIAISON_PASSPHRASE", "the passphrase of another keystore")
    try:
        result = run("inbox", "--keystore", ks_path, "--passphrase-fd", str(read_end))
    finally:
        os.close(read_end)
    assert result.err.startswith(UNAVAILABLE), result.err


def test_the_environment_is_used_without_an_option(run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    assert run("inbox", "--keystore", ks_path).err.startswith(UNAVAILABLE)


@pytest.mark.parametrize("command", [("inbox",), ("officer", "init"), ("signal", "raise")])
def test_help_states_the_order(run: Run, command: tuple[str, ...]) -> None:
    out = " ".join(run(*command, "--help").out.split())
    assert "--passphrase-file" in out
    assert "comes before $LIAISON_PASSPHRASE, which comes before a hidden prompt" in out


# --- 2. no terminal to ask on -------------------------------------------------------------


def _without_terminal(*args: str) -> subprocess.CompletedProcess[str]:
    """`liaison ARGS` in a new session (no controlling terminal), stdin not a terminal,
    no passphrase in the environment: as from cron, CI or a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_PASSPHRASE"}
    return subprocess.run([*LIAISON, *args], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                          check=False)


def test_officer_init_without_a_terminal_names_the_ways_to_give_a_passphrase(
        network: Network) -> None:
    ks_path = network.root / "new.keystore"
    proc = _without_terminal("officer", "init", "--id", "nl/avisser", "--name", "Anna Visser",
                             "--role", "liaison officer", "--node-url", network.node_url,
                             "--ca", str(network.ca), "--keystore", str(ks_path),
                             "--request-out", str(network.root / "new.request"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line: no warning, no traceback
    assert proc.stderr.startswith("error: config_error: no terminal to ask for the new "
                                  "keystore passphrase on: "), proc.stderr
    for way in ("--passphrase-file", "--passphrase-fd", "$LIAISON_PASSPHRASE"):
        assert way in proc.stderr
    assert "Warning" not in proc.stderr and "aborted" not in proc.stderr
    assert not ks_path.exists()


def test_any_officer_command_without_a_terminal_says_the_same(run: Run,
                                                              network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    proc = _without_terminal("inbox", "--keystore", str(ks_path))
    assert (proc.returncode, proc.stderr.count("\n")) == (2, 1), proc.stderr
    assert proc.stderr.startswith("error: config_error: no terminal to ask for the keystore "
                                  "passphrase on: give --passphrase-file FILE")


def test_a_missing_keystore_is_said_before_a_passphrase_is_asked(network: Network) -> None:
    proc = _without_terminal("inbox", "--keystore", str(network.root / "absent.keystore"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: config_error: no keystore at "), proc.stderr


def test_a_tag_option_missing_is_said_before_a_passphrase_is_asked(
        run: Run, network: Network) -> None:
    """No keystore is opened to learn that --tlp GREEN needs --community."""
    ks_path, _, _ = _init_officer(run, network)
    for command in (("send", "--to", "be/mpeeters", "--handling", "H0", "--subject", "s"),
                    ("request", "--to", "be/mpeeters", "--urgency", "other", "--subject", "s"),
                    ("signal", "raise", "--category", "online-radicalisation", "--severity",
                     "low", "--region", "NL-LI", "--share-with", "be")):
        proc = _without_terminal(*command, "--tlp", "GREEN", "--text", "t", "--purpose", "p",
                                 "--keystore", str(ks_path))
        assert proc.stderr.startswith("error: malformed: --tlp GREEN needs --community"), (
            command, proc.stderr)


# --- 3. errors that name the option to add --------------------------------------------------

BASE = ("--subject", "Vehicle sighting", "--text", "Blue van", "--purpose", "inquiry")


@pytest.mark.parametrize(("args", "expected"), [
    (("send", "--to", "be/mpeeters", "--handling", "H0", "--tlp", "GREEN", *BASE),
     "error: malformed: --tlp GREEN needs --community NAME (the community it may circulate "
     "in): tag community must not be empty"),
    (("send", "--to", "be/mpeeters", "--handling", "H3", "--tlp", "AMBER", *BASE),
     "error: malformed: --handling H3 needs --conditions TEXT (the restrictions recipients "
     "must follow): tag conditions must not be empty"),
    (("send", "--to", "be/mpeeters", "--handling", "H0", "--tlp", "AMBER",
      "--conditions", "no court use", *BASE),
     "error: malformed: --conditions goes only with --handling H3: "),
    (("send", "--to", "be/mpeeters", "--handling", "H0", "--tlp", "AMBER",
      "--community", "ECTC", *BASE),
     "error: malformed: --community goes only with --tlp GREEN: "),
    (("send", "--to", "be/mpeeters", "--handling", "H0", "--tlp", "AMBER",
      "--subject", "s", "--text", "t", "--purpose", " "),
     "error: malformed: --purpose: tag purpose must not be empty"),
    (("request", "--to", "be/mpeeters", "--urgency", "other", "--tlp", "green", *BASE),
     "error: malformed: --tlp GREEN needs --community NAME"),
    (("request", "--to", "be/mpeeters", "--urgency", "other", "--handling", "H3", *BASE),
     "error: malformed: --handling H3 needs --conditions TEXT"),
    (("signal", "raise", "--category", "online-radicalisation", "--severity", "low",
      "--region", "NL-LI", "--text", "seen", "--share-with", "be", "--handling", "H3"),
     "error: malformed: --handling H3 needs --conditions TEXT"),
    (("signal", "raise", "--category", "online-radicalisation", "--severity", "low",
      "--region", "NL-LI", "--text", "seen", "--share-with", "be", "--tlp", "GREEN"),
     "error: malformed: --tlp GREEN needs --community NAME"),
])
def test_a_tag_error_names_the_option_to_add(run: Run, network: Network,
                                            args: tuple[str, ...], expected: str) -> None:
    ks_path, _, _ = _init_officer(run, network)
    result = run(*args, "--keystore", ks_path)
    assert result.code == 2
    assert result.err.startswith(expected), result.err


def test_the_added_options_are_accepted(run: Run, network: Network) -> None:
    """The control case: with the option the error named, the command reaches the node."""
    ks_path, _, _ = _init_officer(run, network)
    for args in (
        ("send", "--to", "be/mpeeters", "--handling", "H3", "--conditions", "no court use",
         "--tlp", "GREEN", "--community", "ECTC", *BASE),
        ("request", "--to", "be/mpeeters", "--urgency", "other", "--handling", "H3",
         "--conditions", "no court use", "--tlp", "GREEN", "--community", "ECTC", *BASE),
        ("signal", "raise", "--category", "online-radicalisation", "--severity", "low",
         "--region", "NL-LI", "--text", "seen", "--share-with", "be", "--handling", "H3",
         "--conditions", "no court use"),
    ):
        result = run(*args, "--keystore", ks_path)
        assert result.err.startswith(UNAVAILABLE), (args[0], result.err)


# --- 4. every missing option in one message -----------------------------------------------


def test_send_names_every_missing_option_at_once(run: Run) -> None:
    result = run("send", "--text", "Blue van")
    assert result.code == 2
    assert ("Error: Missing options '--to', '--subject', '--handling', '--tlp', "
            "'--purpose'.") in result.err, result.err
    assert result.err.count("Missing") == 1


def test_officer_init_names_every_missing_option_at_once(run: Run) -> None:
    result = run("officer", "init", "--name", "Anna Visser")
    assert result.code == 2
    assert "Missing options '--id', '--role', '--node-url', '--ca'." in result.err, result.err


def test_a_missing_argument_and_options_are_named_together(run: Run) -> None:
    result = run("consent", "grant")
    assert result.code == 2
    assert "Missing argument 'ID'; options '--forwarder', '--for'." in result.err, result.err


def test_one_missing_option_is_click_s_own_message(run: Run) -> None:
    result = run("send", "--text", "t", "--subject", "s", "--handling", "H0", "--tlp",
                 "AMBER", "--purpose", "p")
    assert result.code == 2
    assert "Error: Missing option '--to'." in result.err, result.err


def test_an_admin_command_names_every_missing_option_at_once(run: Run) -> None:
    result = run("admin", "backup")
    assert result.code == 2
    assert "Missing options '--config', '--out'." in result.err, result.err


# --- 5. whole ids and cells when the output is not a terminal -------------------------------

LONG_ID = "01M8YFV66ABCDEFGHJKMNPQRST"
LONG_ERROR = ("ClientConnectorError: Cannot connect to host 127.0.0.1:44443 ssl:default "
              "[Connect call failed ('127.0.0.1', 44443)] after 5 attempts")


def test_a_piped_table_prints_every_cell_whole() -> None:
    console = tables.console()
    assert not console.is_terminal  # pytest captures stdout: as a pipe would
    console.file = io.StringIO()
    table = tables.table("id", "from", "direction", "urgency", "due", "state", "last error")
    table.add_row(LONG_ID, "be/mpeeters-duty-desk", "outgoing", "urgent-indirect",
                  "2026-12-04 12:00 UTC", "71.5 h left", LONG_ERROR)
    console.print(table)
    out = console.file.getvalue()
    assert LONG_ID in out and LONG_ERROR in out and "…" not in out


def test_on_a_narrow_terminal_an_id_stays_whole_and_other_cells_fold() -> None:
    url = "https://be.liaison.example:44443/federation/v1/transactions/" + LONG_ID
    console = Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None)
    table = tables.table("id", "peer url")
    table.add_row(LONG_ID, url)
    console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert out.count(LONG_ID) == 1 and "…" not in out  # the id whole; the url folded
    cells = "".join(line.split("│")[2].strip() for line in out.splitlines()
                    if line.count("│") == 3)
    assert cells == url


def test_admin_status_piped_shows_the_whole_last_error(run: Run, network: Network) -> None:
    async def fail_peer() -> None:
        store = NodeStore(network.database, "nl")
        await store.open()
        try:
            await store.set_peer_backoff("be", 5, 0, LONG_ERROR)
        finally:
            await store.close()

    asyncio.run(fail_peer())
    result = run("admin", "status", "--config", network.config)
    assert result.code == 0, result.err
    assert LONG_ERROR in result.out and "…" not in result.out, result.out


LISTINGS = [("inbox",), ("requests",), ("status", "ID"), ("directory",),
            ("directory", "search"), ("signal", "list"), ("signal", "show", "ID"),
            ("admin", "status"), ("admin", "keys", "list"), ("admin", "keys", "pending"),
            ("admin", "revocations"),
            ("admin", "audit", "verify")]


@pytest.mark.parametrize("command", LISTINGS, ids=" ".join)
def test_every_listing_has_json_for_scripts(run: Run, command: tuple[str, ...]) -> None:
    words = [w for w in command if w != "ID"]
    result = run(*words, "--help")
    assert result.code == 0, result.err
    assert "--json" in result.out


# --- 6. the inbox by precedence, `held` explained; a backup is one file -------------------


def _entry(seq: int, precedence: str, relayed: int) -> InboxEntry:
    return InboxEntry(seq=seq, id=f"01M8YFV66ABCDEFGHJKMNPQR{seq:02d}", sender="be/mpeeters",
                      kind="message", precedence=precedence, created=relayed - 5,
                      relayed=relayed, acked=None)


def test_the_inbox_lists_flash_first_then_by_arrival(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    arrived = [_entry(1, "routine", 1000), _entry(2, "priority", 2000),
               _entry(3, "flash", 3000), _entry(4, "routine", 4000),
               _entry(5, "immediate", 5000), _entry(6, "flash", 6000)]
    assert [e.seq for e in officer_view.by_precedence(arrived)] == [3, 6, 5, 2, 1, 4]
    officer_view.print_inbox(arrived)
    out = capsys.readouterr().out
    positions = [out.index(e.id) for e in arrived]
    assert sorted(range(6), key=positions.__getitem__) == [2, 5, 4, 1, 0, 3]
    assert "content: held = your node keeps it, sealed for you" in " ".join(out.split())


def test_inbox_help_explains_held_and_the_order(run: Run) -> None:
    out = " ".join(run("inbox", "--help").out.split())
    assert "content: held = your node keeps it, sealed for you" in out
    assert "flash, immediate, priority, routine" in out


def test_a_backup_is_one_self_contained_file(run: Run, network: Network) -> None:
    async def make_database() -> None:
        store = NodeStore(network.database, "nl")
        await store.open()
        await store.close()

    asyncio.run(make_database())
    backups = network.root / "backups"
    backups.mkdir()
    result = run("admin", "backup", "--config", network.config, "--out",
                 backups / "nl.sqlite3")
    assert result.code == 0, result.err
    assert sorted(p.name for p in backups.iterdir()) == ["nl.sqlite3"]
    # Read again (as restore does): still one file.
    assert run("admin", "restore", "--config", network.config, "--from",
               backups / "nl.sqlite3", "--replace").code == 0
    assert sorted(p.name for p in backups.iterdir()) == ["nl.sqlite3"]
