"""`liaison approvals | approve | reject`: four-eyes release (issue 19).

Your node holds an envelope its `[four_eyes]` policy covers (by default TLP:RED, H3, and
signals of the highest severity) until a second officer of the sender's unit approves it.
`approvals` lists what waits: what you sent, and what you may decide. `approve ID` shows
you the envelope's header, verified under its sender's card, and signs an approval over
its exact bytes; the approval travels with the envelope to every node and reader. `reject
ID --reason` ends it; the sender is told why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from liaison_net.cli import tables
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    emit_json,
    keystore_options,
    load_keystore,
    node_session,
    now_ms,
    run,
)
from liaison_net.client import approvals
from liaison_net.errors import Malformed


@click.command("approvals", cls=Command)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@keystore_options
def approvals_cmd(as_json: bool, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Envelopes held for a second officer: those you sent, and those you may approve."""
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> list[dict[str, Any]]:
        async with node_session(ks, keystore_path) as node:
            return await node.approvals()

    rows = run(go())
    if as_json:
        emit_json(rows)
        return
    table = tables.table("id", "you are", "sender", "unit", "to", "held since", "until",
                         title=f"held for four-eyes release ({ks.officer})")
    for r in rows:
        to = [*map(str, r.get("recipients_local") or []), *map(str, r.get("nodes") or [])]
        table.add_row(str(r.get("id")), str(r.get("role")), str(r.get("sender")),
                      str(r.get("unit")), ", ".join(to), str(r.get("held")),
                      str(r.get("until")))
    tables.console().print(table)
    if not rows:
        click.echo("nothing waits for a four-eyes decision")


def _decide(envelope_id: str, *, approve: bool, reason: str, as_json: bool,
            keystore_path: Path, passphrase_file: Path | None) -> None:
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            directory = await node.directory(now=cli_clock().host_now())
            envelope = approvals.review(await node.held_envelope(envelope_id), directory,
                                        envelope_id)
            h = envelope.header
            if not as_json:
                click.echo(f"{h.kind.value} from {h.sender} to "
                           f"{', '.join(r.officer for r in h.recipients)}: "
                           f"TLP:{h.tag.tlp.value} {h.tag.handling.value}, owner "
                           f"{h.tag.owner}, purpose {h.tag.purpose!r} (signature verified)")
            statement = approvals.decision(envelope, approver=ks.officer, key=ks.signing,
                                           approve=approve, reason=reason, now=now_ms())
            return await node.decide_held(envelope_id, statement)

    result = run(go())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{result.get('id')} {result.get('state')} by {result.get('by')}")


@click.command("approve", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the decided hold as JSON.")
@keystore_options
def approve_cmd(envelope_id: str, as_json: bool, keystore_path: Path,
                passphrase_file: Path | None) -> None:
    """Approve held envelope ID as the second officer; it leaves with your signature."""
    _decide(envelope_id, approve=True, reason="", as_json=as_json,
            keystore_path=keystore_path, passphrase_file=passphrase_file)


@click.command("reject", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--reason", required=True, help="Why: the sender reads it.")
@click.option("--json", "as_json", is_flag=True, help="Print the decided hold as JSON.")
@keystore_options
def reject_cmd(envelope_id: str, reason: str, as_json: bool, keystore_path: Path,
               passphrase_file: Path | None) -> None:
    """Reject held envelope ID: it is never sent, and its sender is told why."""
    if not reason.strip():
        raise Malformed("--reason must say why")
    _decide(envelope_id, approve=False, reason=reason, as_json=as_json,
            keystore_path=keystore_path, passphrase_file=passphrase_file)


def register(cli: click.Group) -> None:
    for command in (approvals_cmd, approve_cmd, reject_cmd):
        cli.add_command(command)
