"""`liaison request | reply | requests`: information requests with legal deadlines.

Directive (EU) 2023/977, art. 5: an urgent request for directly accessible information is
answered within 8 hours, an urgent one for indirectly accessible information within
3 days, any other within 7 days. The urgency travels in the signed header, so both nodes
know the due time; a reply names its request, and a reply after the due time must say why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from liaison_net.cli import tables
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    build_tag,
    check_send,
    check_tag_options,
    comma_nodes,
    emit_json,
    keystore_options,
    load_keystore,
    node_session,
    now_ms,
    run,
    warn_directory,
)
from liaison_net.core import content as content_mod
from liaison_net.core import sealing
from liaison_net.core.envelope import Kind, Precedence, Urgency
from liaison_net.core.ids import check_officer_id, id_from_text, node_of
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import Handling, Owner, OwnershipTag, Tlp
from liaison_net.errors import Forbidden, Malformed

PRECEDENCE = {Urgency.URGENT_DIRECT: Precedence.IMMEDIATE,
              Urgency.URGENT_INDIRECT: Precedence.PRIORITY, Urgency.OTHER: Precedence.ROUTINE}


def _ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@click.command("request", cls=Command)
@click.option("--to", "recipients", multiple=True, required=True, help="Officer id.")
@click.option("--urgency", required=True, type=click.Choice([u.value for u in Urgency]),
              help="urgent-direct: 8 hours; urgent-indirect: 3 days; other: 7 days.")
@click.option("--subject", required=True)
@click.option("--text", required=True, help="What you ask for, and why.")
@click.option("--handling", type=click.Choice([h.value for h in Handling]), default="H0",
              show_default=True, help="SIENA handling code H0-H3.")
@click.option("--conditions", default="", help="The restrictions, required with H3.")
@click.option("--tlp", type=click.Choice([t.value for t in Tlp], case_sensitive=False),
              default="AMBER", show_default=True, help="TLP 2.0 label.")
@click.option("--community", default="", help="The community, required with TLP GREEN.")
@click.option("--share-with", help="Nodes it may reach (default: yours and the recipients').")
@click.option("--purpose", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def request_cmd(recipients: tuple[str, ...], urgency: str, subject: str, text: str,
                handling: str, conditions: str, tlp: str, community: str,
                share_with: str | None, purpose: str, as_json: bool, keystore_path: Path,
                passphrase_file: Path | None) -> None:
    """Ask colleagues for information; the legal due time follows the urgency."""
    to = list(dict.fromkeys(check_officer_id(r, what="--to") for r in recipients))
    check_tag_options(handling=handling, tlp=tlp, conditions=conditions, community=community,
                      purpose=purpose)
    ks = load_keystore(keystore_path, passphrase_file)
    now = now_ms()
    level = Urgency(urgency)
    nodes = comma_nodes(share_with) or frozenset({ks.node, *(node_of(r) for r in to)})
    tag = build_tag(own=ks.node, unit="liaison", handling=handling, tlp=tlp, source="A",
                    accuracy=2, share_with=nodes, permit=(), purpose=purpose,
                    retain_until=now + 365 * DAY_MS, conditions=conditions,
                    community=community)
    check_send(tag, to, own=ks.node, now=now)

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            directory = await node.directory(now=cli_clock().host_now())
            warn_directory(directory)
            envelope = sealing.seal(
                sender=ks.officer, sender_key=ks.signing,
                recipients=[directory.recipient(r, now=now) for r in to], tag=tag,
                plaintext=content_mod.encode(content_mod.Content(subject=subject, text=text)),
                now=now, expires=now + level.period_ms + 7 * DAY_MS, kind=Kind.REQUEST,
                urgency=level, precedence=PRECEDENCE[level])
            result = await node.submit(envelope.to_bytes())
            return {"id": result.id, "status": result.status, "due": envelope.header.due}

    result = run(go())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{result['id']} {result['status']}: due {_ts(result['due'])}")


@click.command("reply", cls=Command)
@click.argument("request_id", metavar="ID")
@click.option("--text", required=True, help="Your answer.")
@click.option("--late-reason", default="", help="Required when answering after the due time.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def reply_cmd(request_id: str, text: str, late_reason: str, as_json: bool,
              keystore_path: Path, passphrase_file: Path | None) -> None:
    """Answer request ID, under its tag, to the officer who asked."""
    wanted = id_from_text(request_id.strip())
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            directory = await node.directory(now=cli_clock().host_now())
            request = sealing.verify(await node.fetch(request_id), directory.lookup(),
                                     now=None)
            h = request.header
            if request.id != wanted or h.kind is not Kind.REQUEST or h.due is None:
                raise Malformed(f"{request_id} is not a request")
            if ks.officer not in {r.officer for r in h.recipients}:
                raise Forbidden(f"{request_id} was not addressed to you")
            now = now_ms()
            late = now > h.due
            if late and not late_reason.strip():
                raise Malformed(f"the request was due {_ts(h.due)}: a late reply must state a "
                                "reason (--late-reason)")
            body = text + (f"\n\nLate: {late_reason}" if late else "")
            envelope = sealing.seal(
                sender=ks.officer, sender_key=ks.signing,
                recipients=[directory.recipient(h.sender, now=now)],
                tag=_reply_tag(h.tag, ks.node),
                plaintext=content_mod.encode(content_mod.Content(
                    subject=f"Re: request {h.id_text}", text=body)),
                now=now, expires=now + 7 * DAY_MS, kind=Kind.REPLY, ref=request.id,
                precedence=h.precedence)
            result = await node.submit(envelope.to_bytes())
            return {"id": result.id, "status": result.status, "late": late}

    result = run(go())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{result['id']} {result['status']}" + (" (late)" if result["late"] else ""))


def _reply_tag(tag: OwnershipTag, own: str) -> OwnershipTag:
    """A reply is the replier's own information: their service owns it, shared back with
    the requester's country under the same handling and TLP as the request."""
    return OwnershipTag(owner=Owner(own, "liaison"), handling=tag.handling, tlp=tag.tlp,
                        evaluation=tag.evaluation, share_with=tag.share_with | {own},
                        permitted_actions=frozenset(), purpose=tag.purpose,
                        retain_until=max(tag.retain_until, now_ms() + 30 * DAY_MS),
                        conditions=tag.conditions, community=tag.community).validate()


@click.command("requests", cls=Command)
@click.option("--all", "include_answered", is_flag=True, help="Include answered requests.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@keystore_options
def requests_cmd(include_answered: bool, as_json: bool, keystore_path: Path,
                 passphrase_file: Path | None) -> None:
    """Open requests, incoming and outgoing, with their legal due times."""
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> list[dict[str, Any]]:
        async with node_session(ks, keystore_path) as node:
            return await node.requests(include_answered=include_answered)

    rows = run(go())
    if as_json:
        emit_json(rows)
        return
    now = now_ms()
    table = tables.table("id", "direction", "from / to", "urgency", "due", "state",
                         title=f"requests of {ks.officer}")
    for r in rows:
        due = int(r["due"])
        state = ("answered" if r["answered"] else "escalated" if r["escalated"]
                 else "OVERDUE" if now > due else f"{(due - now) / HOUR_MS:.1f} h left")
        table.add_row(str(r["id"]), str(r["direction"]), _counterpart(r), str(r["urgency"]),
                      _ts(due), state)
    tables.console().print(table)


def _counterpart(row: dict[str, Any]) -> str:
    """The other side: who asked (incoming), or whom you asked (outgoing; "-" once the
    request's content has been purged)."""
    if row.get("direction") == "outgoing":
        return "to " + (", ".join(str(o) for o in row.get("to") or []) or "-")
    return f"from {row['sender']}"


def register(cli: click.Group) -> None:
    for command in (request_cmd, reply_cmd, requests_cmd):
        cli.add_command(command)
