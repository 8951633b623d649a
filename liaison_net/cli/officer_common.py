"""What every officer command shares: the keystore and passphrase options, running the
async client from click, the clock, JSON output, and the sending client's tag check.

Passphrase: --passphrase-file or --passphrase-fd (the first line of either), else
$LIAISON_PASSPHRASE, else a hidden prompt on the terminal; the option given on the command
line wins, as with any option. Without a terminal to ask on, a typed error names the three
ways instead of a prompt that cannot be answered. It is never echoed, printed or logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.client import keystore as keystore_mod
from liaison_net.client import tagging
from liaison_net.client.directory import Directory
from liaison_net.client.keystore import Keystore
from liaison_net.core.ids import check_node_id, node_of
from liaison_net.core.ownership import (
    OwnershipTag,
)
from liaison_net.errors import (
    ConfigError,
    LimitExceeded,
    Malformed,
    PolicyRefused,
)

if TYPE_CHECKING:  # aiohttp: imported where a command talks to the node
    from liaison_net.client.local_cache import LocalCache
    from liaison_net.client.session import NodeSession

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

KEYSTORE_ENV = "LIAISON_KEYSTORE"
PASSPHRASE_ENV = "LIAISON_PASSPHRASE"
DEFAULT_KEYSTORE = Path("officer.keystore")
MAX_PASSPHRASE_FILE_BYTES = 4096
_PASSPHRASE_FD = "liaison.passphrase_fd"  # click context meta: --passphrase-fd's value


# --- shared plumbing ------------------------------------------------------------------------


def _remember_fd(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        ctx.meta[_PASSPHRASE_FD] = value


def keystore_options(command: F) -> F:
    """--keystore, --passphrase-file and --passphrase-fd, identical on every officer command.

    --passphrase-fd reaches ``read_passphrase`` through the click context, so commands keep
    their ``(keystore_path, passphrase_file)`` parameters."""
    command = click.option(
        "--passphrase-fd", type=click.IntRange(0), expose_value=False, callback=_remember_fd,
        help="Open file descriptor whose first line is the keystore passphrase, for "
             f"scripts (e.g. 3 with `3< secret`); it comes before ${PASSPHRASE_ENV}.")(command)
    command = click.option(
        "--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
        help="File whose first line is the keystore passphrase; it comes before "
             f"${PASSPHRASE_ENV}, which comes before a hidden prompt on the terminal."
        )(command)
    return click.option(
        "--keystore", "keystore_path", type=click.Path(dir_okay=False, path_type=Path),
        envvar=KEYSTORE_ENV, default=DEFAULT_KEYSTORE, show_default=True,
        help=f"The officer keystore (or ${KEYSTORE_ENV}).")(command)


def read_passphrase(passphrase_file: Path | None, *, prompt: str, new: bool) -> bytes:
    """The keystore passphrase: the option given, else the environment, else the terminal."""
    ctx = click.get_current_context(silent=True)
    fd = ctx.meta.get(_PASSPHRASE_FD) if ctx is not None else None
    if passphrase_file is not None and fd is not None:
        raise click.UsageError("give --passphrase-file or --passphrase-fd, not both")
    if passphrase_file is not None:
        try:
            raw = passphrase_file.read_bytes()[:MAX_PASSPHRASE_FILE_BYTES]
        except OSError as exc:
            raise ConfigError(f"cannot read passphrase file {passphrase_file}: "
                              f"{exc.strerror or exc}") from None
        return raw.split(b"\n", 1)[0].removesuffix(b"\r")
    if fd is not None:
        return _read_fd_line(fd)
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env.encode()
    if not _terminal():
        # getpass would warn about echo and click answer "aborted": say what to do instead.
        raise ConfigError(f"no terminal to ask for the {'new ' if new else ''}keystore "
                          "passphrase on: give --passphrase-file FILE or --passphrase-fd N, "
                          f"or set ${PASSPHRASE_ENV}")
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=new, err=True)
    return str(value).encode()


def _terminal() -> bool:
    """Whether a hidden prompt can be answered: getpass asks on the controlling terminal
    (/dev/tty) when there is one, else on stdin when that is a terminal."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _read_fd_line(fd: int) -> bytes:
    """The first line on ``fd``, read a byte at a time so nothing after it is consumed
    (a script may pass more on the same descriptor); the descriptor stays open."""
    line = bytearray()
    try:
        while len(line) < MAX_PASSPHRASE_FILE_BYTES:
            byte = os.read(fd, 1)
            if not byte or byte == b"\n":
                break
            line += byte
    except OSError as exc:
        raise ConfigError(f"cannot read the passphrase from file descriptor {fd}: "
                          f"{exc.strerror or exc}") from None
    return bytes(line).removesuffix(b"\r")


def load_keystore(path: Path, passphrase_file: Path | None) -> Keystore:
    if not path.exists():  # said before a passphrase is asked that would open nothing
        raise ConfigError(f"no keystore at {path}: run `liaison officer init` first, "
                          f"or pass --keystore / set ${KEYSTORE_ENV}")
    passphrase = read_passphrase(passphrase_file, prompt=f"Passphrase for {path}", new=False)
    return keystore_mod.load(path, passphrase)


def local_cache(keystore_path: Path) -> LocalCache:
    """The session token and directory kept beside the keystore (client.local_cache);
    what it refuses to trust is a warning on stderr."""
    from liaison_net.client.local_cache import LocalCache

    return LocalCache(keystore_path, now_ms=now_ms,
                      warn=lambda text: click.echo(f"warning: {view.safe(text)}", err=True))


def node_session(ks: Keystore, keystore_path: Path,
                 cache: LocalCache | None = None) -> NodeSession:
    """A session to the home node that reuses the cached token while it is valid."""
    from liaison_net.client.session import NodeSession

    return NodeSession(ks, cache=cache or local_cache(keystore_path))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def now_ms() -> int:
    return cli_clock().now_ms()


def warn_directory(directory: Directory) -> None:
    for warning in directory.warnings:
        click.echo(f"warning: {view.safe(warning)}", err=True)


def emit_json(value: Any) -> None:
    # ensure_ascii: whatever a sender wrote reaches the terminal as escapes, not controls.
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True))


# --- the ownership tag on the sending side ------------------------------------------------


#: What core's tag checks say, and the option an officer adds or changes: the hint first,
#: then core's words (first match wins, so the pairs come before the plain fields).
_TAG_HINTS: tuple[tuple[str, str], ...] = (
    ("tag community must not be empty",
     "--tlp GREEN needs --community NAME (the community it may circulate in)"),
    ("tag community is only allowed", "--community goes only with --tlp GREEN"),
    ("tag conditions must not be empty",
     "--handling H3 needs --conditions TEXT (the restrictions recipients must follow)"),
    ("tag conditions are only allowed", "--conditions goes only with --handling H3"),
    ("tag community", "--community"),
    ("tag conditions", "--conditions"),
    ("tag purpose", "--purpose"),
    ("tag owner unit", "--unit"),
    ("tag share_with", "--share-with"),
    ("tag retain_until", "--retain-days"),
)


def build_tag(*, own: str, unit: str, handling: str, tlp: str, source: str, accuracy: int,
              share_with: frozenset[str], permit: tuple[str, ...], purpose: str,
              retain_until: int, conditions: str, community: str) -> OwnershipTag:
    """The ownership tag from the officer's options (``client.tagging``, as the desk builds
    it); a refusal names the option to add or change, not the tag field behind it."""
    try:
        return tagging.build_tag(own=own, unit=unit, handling=handling, tlp=tlp,
                                 source=source, accuracy=accuracy, share_with=share_with,
                                 permit=permit, purpose=purpose, retain_until=retain_until,
                                 conditions=conditions, community=community)
    except (Malformed, LimitExceeded) as exc:
        for said, option in _TAG_HINTS:
            if exc.detail.startswith(said):
                raise type(exc)(f"{option}: {exc.detail}", code=exc.code) from None
        raise


_ANY_NODE = "nl"  # a valid node id standing in for the keystore's, for check_tag_options


def check_tag_options(*, handling: str, tlp: str, conditions: str, community: str,
                      purpose: str, unit: str = "liaison") -> None:
    """The tag checks that need no keystore, run before the passphrase is asked: an officer
    learns of a missing --community before typing it, not after. (Owner and share_with
    are checked with the keystore's node, in ``build_tag``.)"""
    build_tag(own=_ANY_NODE, unit=unit, handling=handling, tlp=tlp, source="X", accuracy=4,
              share_with=frozenset({_ANY_NODE}), permit=(), purpose=purpose, retain_until=1,
              conditions=conditions, community=community)


def check_send(tag: OwnershipTag, recipients: list[str], *, own: str, now: int) -> None:
    """The sending client's policy check (``client.tagging``), with the option to change."""
    try:
        tagging.check_send(tag, recipients, own=own, now=now)
    except PolicyRefused as exc:
        hint = ""
        if exc.code == "policy.share_with":
            recipient = exc.detail.removeprefix("not sending to ").split(":", 1)[0]
            hint = (f" (add {node_of(recipient)} to --share-with if the information may go "
                    "there)")
        raise PolicyRefused(f"{exc.detail}{hint}", code=exc.code) from None


def comma_nodes(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    nodes = [part.strip() for part in value.split(",") if part.strip()]
    return frozenset(check_node_id(n, what="--share-with entry") for n in nodes)


