"""`liaison inbox` (a list, or --follow live) and `liaison ack`, which takes an envelope off
it (``acknowledge`` also serves `signal ack`)."""

from __future__ import annotations

from pathlib import Path

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Command
from liaison_net.cli.officer_common import (
    emit_json,
    keystore_options,
    load_keystore,
    local_cache,
    node_session,
    run,
)
from liaison_net.core.envelope import Kind


@click.command("inbox", cls=Command)
@click.option("--all", "show_all", is_flag=True,
              help="Include acknowledged envelopes and delivery evidence (which `liaison "
                   "status ID` shows per recipient).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the entries as JSON (with --follow: one JSON object a line).")
@click.option("--follow", is_flag=True,
              help="Keep running and print envelopes as they arrive, from your "
                   "acknowledged position on, until Ctrl-C.")
@keystore_options
def inbox_cmd(show_all: bool, as_json: bool, follow: bool, keystore_path: Path,
              passphrase_file: Path | None) -> None:
    """List your inbox (unacknowledged envelopes, or --all), or --follow it live.

    The most pressing first: flash, immediate, priority, routine, each in arrival order
    (--json too; --follow prints as they arrive).

    \b
    content: held = your node keeps it, sealed for you, until the tag's retention date:
      `liaison read ID` opens it, `liaison ack ID` takes it off this list (still readable);
    purged = that date has passed: the content is gone everywhere, only its tag is left.
    """
    ks = load_keystore(keystore_path, passphrase_file)
    if follow:
        from liaison_net.cli import officer_follow

        officer_follow.follow_inbox(ks, keystore_path, show_all=show_all, as_json=as_json)
        return

    cache = local_cache(keystore_path)

    async def go() -> None:
        from liaison_net.cli import delivery_status  # aiohttp and rich: on use only

        async with node_session(ks, keystore_path, cache) as node:
            items = [i for i in await node.inbox_all()
                     if show_all or (i.acked is None and i.kind != Kind.EVIDENCE.value)]
            if as_json:
                emit_json([view.inbox_json(i) for i in view.by_precedence(items)])
            else:
                view.print_inbox(items)
            # "delivered", back to each sender, over the same session
            await delivery_status.after_inbox(ks, keystore_path, items, node=node, cache=cache)

    run(go())


@click.command("ack", cls=Command)
@click.argument("envelope_id", metavar="ID")
@keystore_options
def ack_cmd(envelope_id: str, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Acknowledge envelope ID in your inbox."""
    acknowledge(envelope_id, keystore_path, passphrase_file)


def acknowledge(envelope_id: str, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Shared by `ack` and `signal ack`: the node records it (and, for a desk's signal,
    tells the sender)."""
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> bool:
        async with node_session(ks, keystore_path) as node:
            return await node.ack(envelope_id)

    done = run(go())
    click.echo(f"acknowledged {envelope_id}" if done else f"{envelope_id} was already "
               "acknowledged")

