"""`liaison desk`: the officer's desk, a local web app on 127.0.0.1 (liaison_net/desk/).

The keystore is unlocked here, in this process, with the passphrase read as for every
officer command (officer_common); the browser never sees it, nor a key.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import keystore_options, load_keystore, local_cache


@click.command("desk")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free one).")
@click.option("--no-browser", is_flag=True,
              help="Only print the login link; do not open a browser.")
@keystore_options
def desk(port: int, no_browser: bool, keystore_path: Path,
         passphrase_file: Path | None) -> None:
    """Open your desk: a local web app (inbox, compose, timeline, requests, signals).

    It listens on 127.0.0.1 only and prints a login link that works once; keep this
    command running while you work, and press Ctrl-C to close the desk.
    """
    ks = load_keystore(keystore_path, passphrase_file)
    from liaison_net.desk.officer import DeskOfficer  # aiohttp: on use only
    from liaison_net.desk.server import serve

    async def go() -> None:
        async with DeskOfficer(ks, keystore_path, cli_clock(),
                               cache=local_cache(keystore_path)) as officer:
            await serve(officer, port=port, open_browser=not no_browser,
                        say=lambda line: click.echo(line))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    click.echo("desk closed")
