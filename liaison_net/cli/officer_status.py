"""`liaison status`: where an envelope the officer sent is, per recipient (the work is
in delivery_status, imported on use: aiohttp and rich)."""

from __future__ import annotations

from pathlib import Path

import click

from liaison_net.cli.commands import Command
from liaison_net.cli.officer_common import keystore_options, load_keystore, local_cache


@click.command("status", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@keystore_options
def status_cmd(envelope_id: str, as_json: bool, keystore_path: Path,
               passphrase_file: Path | None) -> None:
    """Where envelope ID is, per recipient: accepted, relayed, delivered, opened (each from
    a signed statement, verified here), refused or expired (from your node's outbox)."""
    ks = load_keystore(keystore_path, passphrase_file)
    from liaison_net.cli import delivery_status  # aiohttp and rich: on use only

    delivery_status.show_status(ks, envelope_id, as_json=as_json,
                                cache=local_cache(keystore_path))

