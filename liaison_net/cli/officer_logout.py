"""`liaison logout`: the node forgets the session token and the local copies kept beside
the keystore are deleted, even when the node cannot be told."""

from __future__ import annotations

from pathlib import Path

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Command
from liaison_net.cli.officer_common import (
    keystore_options,
    load_keystore,
    local_cache,
    node_session,
    run,
)
from liaison_net.errors import LiaisonError


@click.command("logout", cls=Command)
@keystore_options
def logout_cmd(keystore_path: Path, passphrase_file: Path | None) -> None:
    """End your session: your node forgets its token and the copy kept here is deleted.

    Commands keep the session token and the verified directory beside the keystore
    (KEYSTORE.session, KEYSTORE.directory: sealed under your keys, 0600) so the next one
    needs no login; run this when you leave the machine. The next command logs in again.
    """
    ks = load_keystore(keystore_path, passphrase_file)
    cache = local_cache(keystore_path)

    async def go() -> bool:
        async with node_session(ks, keystore_path, cache) as node:
            return await node.logout()

    try:
        forgotten = run(go())
    except LiaisonError as exc:  # the node unreachable: the local copy goes all the same
        click.echo(f"warning: your node was not told: {exc.code}: {view.safe(exc.detail)}",
                   err=True)
        forgotten = False
    finally:
        cache.clear()
    click.echo(f"logged out {ks.officer}" + (" (the node ended the session)" if forgotten
                                             else " (no session was open)"))

