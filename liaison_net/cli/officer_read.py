"""`liaison read`: an envelope from the inbox is verified, checked against its tag
(DELIVER) and only then decrypted; the owner's restriction updates and the four-eyes
approval that released it are checked here too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    emit_json,
    keystore_options,
    load_keystore,
    local_cache,
    node_session,
    now_ms,
    run,
    warn_directory,
)
from liaison_net.client import approvals, reading
from liaison_net.client.directory import Directory
from liaison_net.core import art25, sealing
from liaison_net.core.approval import FourEyesPolicy
from liaison_net.core.envelope import Envelope
from liaison_net.core.ids import id_from_text
from liaison_net.errors import Forbidden, LiaisonError

#: `read` asks for the approval that released an envelope when the network's default
#: four-eyes policy covers it (TLP:RED, H3, critical signals): one request more for those
#: only (a node's own wider policy is its own business; protocol.md §20).
FOUR_EYES = FourEyesPolicy()



@click.command("read", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the envelope as JSON.")
@click.option("--reason", help="Why you consult it (up to 200 characters): your node "
              "records it with the consultation, for the data protection officer.")
@keystore_options
def read_cmd(envelope_id: str, as_json: bool, reason: str | None, keystore_path: Path,
             passphrase_file: Path | None) -> None:
    """Verify, check and decrypt envelope ID; show its tag, what it allows, the content.

    Your node audits every read (LED Art. 25 consultation) with the tag's purpose; give
    --reason where your service asks for one (docs/ownership.md: H3 and TLP:RED)."""
    wanted = id_from_text(envelope_id.strip())
    if reason is not None:
        reason = art25.check_reason(reason)
    ks = load_keystore(keystore_path, passphrase_file)

    cache = local_cache(keystore_path)

    def opened(raw: bytes, directory: Directory) -> tuple[Envelope, dict[str, Any]]:
        # now=None: reading days after delivery is fine; the node applied the clock on receipt.
        envelope = sealing.verify(raw, directory.lookup(), now=None)
        if envelope.id != wanted:
            raise Forbidden("the node answered with a different envelope than the one asked for")
        now = now_ms()
        # The receiving client decides too, as a node would: who signed it, the tag's owner,
        # a forward's original and tag, DELIVER (or FORWARD with consent) here.
        reading.check_received(envelope, directory, own_node=ks.node, now=now)
        plaintext = sealing.open_envelope(envelope, ks.officer, ks.encryption_keys)
        content = reading.readable(envelope, plaintext, reader_node=ks.node)
        return envelope, view.envelope_report(envelope, content, directory, own_node=ks.node,
                                              now=now)

    async def go() -> None:
        from liaison_net.cli import delivery_status  # aiohttp and rich: on use only
        from liaison_net.client.local_cache import verified_directory

        async with node_session(ks, keystore_path, cache) as node:  # one TLS session
            raw, updated = await node.fetch_noting_updates(envelope_id, reason=reason)
            directory, cached = await verified_directory(node, cache, ks,
                                                         now=cli_clock().host_now())
            try:
                envelope, report = opened(raw, directory)
            except LiaisonError:
                if not cached:
                    raise
                # A signer, a forward's original or a revocation newer than the cache:
                # decide again with the node's current directory.
                directory, _ = await verified_directory(node, cache, ks, refresh=True,
                                                        now=cli_clock().host_now())
                envelope, report = opened(raw, directory)
            warn_directory(directory)
            # The owner's restriction updates of it in this inbox, checked here.
            from liaison_net.client import restrictions
            warnings: list[str] = []
            standing = await restrictions.standing(
                node, ks, directory, envelope,
                reading.check_received(envelope, directory, own_node=ks.node, now=now_ms()),
                warnings) if updated else []
            for warning in warnings:
                click.echo(f"warning: {view.safe(warning)}", err=True)
            if FOUR_EYES.covers(envelope.header):  # the approval that released it
                released = approvals.released_by(envelope, await node.approval(envelope_id),
                                                 directory)
                if released is not None:
                    report["four_eyes"] = {"sender": released.sender, "at": released.at,
                                           "approver": released.approver,
                                           "unit": released.unit}
            if as_json:
                emit_json({**report, "restrictions": [s.to_json() for s in standing]})
            else:
                view.print_envelope(report)
                for s in standing:
                    click.echo(view.safe(s.line()))
                if "four_eyes" in report:
                    click.echo(f"four-eyes: sent by {report['four_eyes']['sender']}, "
                               f"approved by {report['four_eyes']['approver']} (verified)")
            # "opened", to the sender, over the same session
            await delivery_status.after_read(ks, keystore_path, envelope, directory,
                                             node=node, cache=cache)

    run(go())

