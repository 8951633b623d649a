"""The `liaison` command: one entry point, one sub-group per audience.

``admin`` is for the people who run the PKI and the nodes, ``node`` runs a node process,
officer commands (send, inbox, read, ...) sit at the top level because officers type them
all day. Each group lives in its own module; this one only assembles them.

Lazily: importing every command module costs a second (aiohttp, PyNaCl, cryptography,
aiosqlite, rich) before `liaison --help` can print a line. So this module names each
command with its one-line help (``_COMMANDS``) and imports a command's module only when
that command is resolved: to run it, or to show its own ``--help``. A test holds the table
to the commands' own docstrings (tests/test_cli_startup.py).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from liaison_net.cli import commands
from liaison_net.cli.edge_clock import clock_offset_option, install
from liaison_net.errors import LiaisonError

#: command name -> (loader "module:function" returning the command, its one-line help).
_COMMANDS: dict[str, tuple[str, str]] = {
    "ack": ("liaison_net.cli.main:_officer_command", "Acknowledge envelope ID in your inbox."),
    "approvals": ("liaison_net.cli.approvals:approvals_cmd",
                  "Envelopes held for a second officer: those you sent, and those you may "
                  "approve."),
    "approve": ("liaison_net.cli.approvals:approve_cmd",
                "Approve held envelope ID as the second officer; it leaves with your "
                "signature."),
    "admin": ("liaison_net.cli.admin:admin",
              "Administer the network: PKI, nodes, officers, keys, audit."),
    "bench": ("liaison_net.cli.bench:bench",
              "Measure our broker beside Mosquitto and RabbitMQ, on 127.0.0.1, in one run."),
    "chaos": ("liaison_net.cli.chaos:chaos",
              "Soak four real nodes under SIGKILLs and partitions, then count every envelope."),
    "consent": ("liaison_net.cli.main:_forwarding_command",
                "Ask an owner for consent to forward, or grant one as the owner."),
    "demo": ("liaison_net.cli.demo:demo",
             "Run the demo network: four national nodes (be, nl, lu, de-nw), four officers."),
    "desk": ("liaison_net.cli.desk:desk",
             "Open your desk: a local web app (inbox, compose, timeline, requests, signals)."),
    "directory": ("liaison_net.cli.main:_officer_command",
                  "The officers you can write to: every card the network CA vouches for."),
    "forward": ("liaison_net.cli.main:_forwarding_command",
                "Pass envelope ID on, under its own tag; refused here when the tag forbids it."),
    "inbox": ("liaison_net.cli.main:_officer_command",
              "List your inbox (unacknowledged envelopes, or --all), or --follow it live."),
    "logout": ("liaison_net.cli.main:_officer_command",
               "End your session: your node forgets its token and the copy kept here is "
               "deleted."),
    "node": ("liaison_net.cli.node:node", "Run a national node."),
    "officer": ("liaison_net.cli.main:_officer_command",
                "Set up this machine for an officer: keys, keystore, enrolment request."),
    "read": ("liaison_net.cli.main:_officer_command",
             "Verify, check and decrypt envelope ID; show its tag, what it allows, the content."),
    "recall": ("liaison_net.cli.restrict:recall_cmd",
               "Withdraw envelope ID, which you sent: every node holding it purges the content."),
    "reject": ("liaison_net.cli.approvals:reject_cmd",
               "Reject held envelope ID: it is never sent, and its sender is told why."),
    "reply": ("liaison_net.cli.main:_requests_command",
              "Answer request ID, under its tag, to the officer who asked."),
    "request": ("liaison_net.cli.main:_requests_command",
                "Ask colleagues for information; the legal due time follows the urgency."),
    "requests": ("liaison_net.cli.main:_requests_command",
                 "Open requests, incoming and outgoing, with their legal due times."),
    "restrict": ("liaison_net.cli.restrict:restrict_cmd",
                 "Tighten the tag of envelope ID, which you sent, on every node that holds it."),
    "send": ("liaison_net.cli.main:_officer_command",
             "Seal a message for each recipient and hand it to your node."),
    "signal": ("liaison_net.cli.main:_officer_command",
               "Raise, list, show and acknowledge radicalisation early-warning signals."),
    "status": ("liaison_net.cli.main:_officer_command",
               "Where envelope ID is, per recipient: accepted, relayed, delivered, opened (each "
                          "from a signed statement, verified here), refused or expired (from "
                          "your node's outbox)."),
}


class LazyGroup(commands.LazyGroup):
    """The top-level group: its commands are ``_COMMANDS``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, lazy=_COMMANDS, **kwargs)


def load(name: str) -> click.Command:
    """Import and return the command ``name`` (tests call it to compare with the table)."""
    return commands.load_lazy(_COMMANDS, name)


def _officer_command(name: str) -> click.Command:
    from liaison_net.cli import officer

    group = click.Group()
    officer.register(group)
    return group.commands[name]


def _forwarding_command(name: str) -> click.Command:
    from liaison_net.cli import forwarding

    group = click.Group()
    forwarding.register(group)
    return group.commands[name]


def _requests_command(name: str) -> click.Command:
    from liaison_net.cli import requests

    group = click.Group()
    requests.register(group)
    return group.commands[name]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="liaison_net")
@clock_offset_option
@click.pass_context
def cli(ctx: click.Context, clock_offset_ms: int | None) -> None:
    """liaison_net: secure federated messaging for the Benelux police liaison network."""
    install(ctx, clock_offset_ms)


def main() -> None:
    """Console-script entry: typed errors become one clear line and exit code 2."""
    try:
        code = cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LiaisonError as exc:
        click.echo(f"error: {exc.code}: {exc.detail}", err=True)
        sys.exit(2)
    # In non-standalone mode click returns ctx.exit(n)'s code instead of exiting.
    if isinstance(code, int) and code != 0:
        sys.exit(code)
