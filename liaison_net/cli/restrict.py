"""`liaison restrict ID` and `liaison recall ID`: the owner tightens, or withdraws, what
it already sent (core/restriction.py, docs/ownership.md §9).

Each seals one update envelope, signed by the officer who sent ID, carrying ID's signed
skeleton and (for restrict) the new tag, to ID's recipients and to the recipients of every
forward of it that a disclosure receipt told the owner about. This client checks the
update as every node will (``tagflow.check``: only the sender of ID, only tighter), before
anything leaves. Each node that applies it answers a signed receipt, shown by
`liaison status ID`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    comma_nodes,
    emit_json,
    keystore_options,
    load_keystore,
    node_session,
    now_ms,
    run,
)
from liaison_net.client import reading, restrictions
from liaison_net.client.keystore import Keystore
from liaison_net.core import content as content_mod
from liaison_net.core import sealing, tagflow
from liaison_net.core.envelope import Kind
from liaison_net.core.ids import id_from_text
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import Handling, OwnershipTag, PermittedAction, Tlp
from liaison_net.core.restriction import is_tighter
from liaison_net.errors import Forbidden, Malformed, NotFound, PolicyRefused


def tightened_tag(old: OwnershipTag, *, tlp: str | None, handling: str | None,
                  share_with: frozenset[str] | None, retain_days: int | None,
                  conditions: str | None, community: str | None,
                  withdraw: tuple[str, ...], now: int) -> OwnershipTag:
    """``old`` with the officer's changes; refused here (as every node would) unless the
    result is strictly tighter."""
    try:
        new_handling = Handling(handling.upper()) if handling else old.handling
        new_tlp = Tlp(tlp.upper()) if tlp else old.tlp
        withdrawn = frozenset(PermittedAction(a) for a in withdraw)
    except ValueError as exc:
        raise Malformed(f"--tlp, --handling or --withdraw: {exc}") from None
    text = old.conditions
    if conditions:
        text = f"{old.conditions} {conditions}".strip() if new_handling is Handling.H3 else ""
        if new_handling is not Handling.H3:
            raise Malformed("--conditions goes only with --handling H3 (or a tag already H3)")
    new = replace(
        old, handling=new_handling, tlp=new_tlp,
        share_with=share_with if share_with is not None else old.share_with,
        permitted_actions=old.permitted_actions - withdrawn,
        retain_until=(min(old.retain_until, now + retain_days * DAY_MS)
                      if retain_days is not None else old.retain_until),
        conditions=text if new_handling is Handling.H3 else "",
        community=(community or old.community) if new_tlp is Tlp.GREEN else "")
    new = new.validate()
    if not is_tighter(old, new):
        raise PolicyRefused("these changes would relax the tag or leave it as it is: an "
                            "update may only tighten (only a new envelope may say more)",
                            code="policy.update_relaxes")
    return new


def _summary(tag: OwnershipTag) -> str:
    return (f"{tag.handling.value}, TLP:{tag.tlp.value}, share_with "
            f"{','.join(sorted(tag.share_with))}, permitted "
            f"{','.join(sorted(a.value for a in tag.permitted_actions)) or 'none'}, "
            f"retain until {view.ts(tag.retain_until)}"
            + (f", conditions: {tag.conditions}" if tag.conditions else ""))


async def _issue(ks: Keystore, keystore_path: Path, envelope_id: str, kind: Kind,
                 make_tag: Any, reason: str) -> dict[str, Any]:
    """Fetch and verify ID (sent by this officer), address, seal, check and submit one
    update; what was done."""
    async with node_session(ks, keystore_path) as node:
        directory = await node.directory(now=cli_clock().host_now())
        original = sealing.verify(await node.fetch(envelope_id), directory.lookup(),
                                  now=None)
        if original.id != id_from_text(envelope_id):
            raise Forbidden("the node answered with a different envelope than the one asked for")
        if original.header.sender != ks.officer:
            raise PolicyRefused(f"only {original.header.sender}, who sent it for its owner "
                                f"{original.header.tag.owner}, may restrict or recall it",
                                code="policy.update_not_owner")
        now = now_ms()
        tag: OwnershipTag = make_tag(original.header.tag, now)
        warnings: list[str] = []
        to = await restrictions.addressees(node, ks, directory, original, warnings)
        to = [o for o in to if o in directory.cards]
        if not to:
            raise NotFound("no recipient of it is left in the directory to tell")
        what = "Recalled" if kind is Kind.RECALL else "Restricted"
        text = (f"{ks.officer} {what.lower()} {original.header.id_text} on "
                f"{view.ts(now)}.\nReason: {reason}\n"
                + ("Its content is purged on every node that holds it; do not use or pass on "
                   "any copy you made." if kind is Kind.RECALL
                   else f"From now on: {_summary(tag)}."))
        envelope = restrictions.seal_update(
            ks, original, kind, tag, recipients=[directory.recipient(o, now=now) for o in to],
            content=content_mod.Content(subject=f"{what}: {original.header.id_text}",
                                        text=text), now=now)
        # Every node will check exactly this (tagflow: owner, only tighter): check it first.
        tagflow.check(envelope.header, layer=tagflow.Layer.ORIGIN, here=ks.node, now=now,
                      lookup=directory.lookup(), officer_key=reading.officer_key(directory))
        result = await node.submit(envelope.to_bytes())
    return {"id": result.id, "status": result.status, "action": kind.value,
            "envelope": original.header.id_text, "to": to, "tag": tag.to_wire(),
            "warnings": warnings}


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    for warning in result["warnings"]:
        click.echo(f"warning: {view.safe(warning)}", err=True)
    click.echo(f"{result['id']} {result['status']}: {result['action']} of "
               f"{result['envelope']} to {', '.join(result['to'])}")
    click.echo(f"each node answers a signed receipt: liaison status {result['envelope']}")


@click.command("restrict", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--tlp", help="A stricter TLP label (AMBER, AMBER+STRICT, RED).")
@click.option("--handling", help="A higher handling code (H1, H2, H3).")
@click.option("--share-with", help="Fewer nodes, comma-separated (the owner's stays).")
@click.option("--retain-days", "--retention", "retain_days", type=click.IntRange(1, 3650),
              help="Purge sooner: this many days from now (never later than now set).")
@click.option("--conditions", help="Conditions to add (H3): appended to any already set.")
@click.option("--community", help="With --tlp GREEN from CLEAR: the named community.")
@click.option("--withdraw", type=click.Choice(["forward", "evidence"]), multiple=True,
              help="Withdraw an advance permission.")
@click.option("--reason", required=True, help="Why, for the recipients (sealed for them).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def restrict_cmd(envelope_id: str, tlp: str | None, handling: str | None,
                 share_with: str | None, retain_days: int | None, conditions: str | None,
                 community: str | None, withdraw: tuple[str, ...], reason: str, as_json: bool,
                 keystore_path: Path, passphrase_file: Path | None) -> None:
    """Tighten the tag of envelope ID, which you sent, on every node that holds it.

    The update goes to its recipients and to those of every forward of it that a
    disclosure receipt told you of; each node applies the new tag (later forwards are
    decided under it) and answers a signed receipt (`liaison status ID`). It may only
    tighten: a stricter --tlp or --handling, fewer --share-with nodes, an earlier
    --retain-days, more --conditions, a --withdraw'n permission."""
    nodes = comma_nodes(share_with)
    ks = load_keystore(keystore_path, passphrase_file)

    def make(old: OwnershipTag, now: int) -> OwnershipTag:
        return tightened_tag(old, tlp=tlp, handling=handling, share_with=nodes,
                             retain_days=retain_days, conditions=conditions,
                             community=community, withdraw=withdraw, now=now)

    _report(run(_issue(ks, keystore_path, envelope_id, Kind.RESTRICT, make, reason)), as_json)


@click.command("recall", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--reason", required=True, help="Why, for the recipients (sealed for them).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def recall_cmd(envelope_id: str, reason: str, as_json: bool, keystore_path: Path,
               passphrase_file: Path | None) -> None:
    """Withdraw envelope ID, which you sent: every node holding it purges the content.

    Its recipients' nodes, and those of every forward of it that a disclosure receipt told
    you of, keep only the signed tag skeleton and answer a signed erasure receipt
    (`liaison status ID`); a later forward of it is refused."""
    ks = load_keystore(keystore_path, passphrase_file)
    _report(run(_issue(ks, keystore_path, envelope_id, Kind.RECALL,
                       lambda old, _now: old, reason)), as_json)
