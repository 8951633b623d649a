"""`liaison inbox --follow`: envelopes as they arrive, one line each (or JSON lines), until
Ctrl-C.

It starts at the officer's acknowledged position (``client.follow.resume_position``), so
whatever is still unacknowledged shows again when the command is restarted; acknowledged
entries after that position, and delivery evidence, are skipped, as plain `liaison inbox`
skips them (``--all`` starts at the beginning and shows everything). Within one run the
stream resumes after a break from the last entry printed, so nothing is shown twice; each
reconnect is reported on stderr as a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.officer_common import node_session
from liaison_net.client.follow import resume_position
from liaison_net.client.keystore import Keystore
from liaison_net.client.session import InboxEntry
from liaison_net.core.envelope import Kind
from liaison_net.errors import LiaisonError


def _reconnecting(error: LiaisonError, delay: float) -> None:
    click.echo(f"warning: {error.code}: {error.detail}; reconnecting in {delay:.1f} s",
               err=True)


def _show(entry: InboxEntry, *, as_json: bool) -> None:
    if as_json:
        # One object a line; ensure_ascii: what a sender wrote arrives as escapes.
        click.echo(json.dumps(view.inbox_json(entry), sort_keys=True, ensure_ascii=True))
    else:
        click.echo(view.inbox_line(entry))


async def _follow(ks: Keystore, keystore_path: Path, *, show_all: bool,
                  as_json: bool) -> None:
    async with node_session(ks, keystore_path) as node:
        after = 0 if show_all else await resume_position(node)
        async with contextlib.aclosing(node.follow(after, on_retry=_reconnecting)) as entries:
            async for entry in entries:
                if show_all or (entry.acked is None and entry.kind != Kind.EVIDENCE.value):
                    _show(entry, as_json=as_json)


def follow_inbox(ks: Keystore, keystore_path: Path, *, show_all: bool, as_json: bool) -> None:
    """Run until Ctrl-C (which ends it quietly, exit code 0)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_follow(ks, keystore_path, show_all=show_all, as_json=as_json))
