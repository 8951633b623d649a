"""`liaison signal raise | list | show | ack`: radicalisation early-warning signals.

A signal goes to the duty desk (``<node>/desk``) of every other node its tag allows, never
further. With subject identifiers, the client normalises them, blinds them, has its node
evaluate the network OPRF on the blinded point, and unblinds: only the pseudonym, never a
name, leaves this machine. `signal show` collects the desks' acknowledgements, escalations
and match notices that came back as signed node notices.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from liaison_net.cli import tables
from liaison_net.cli.commands import Group
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
from liaison_net.cli.officer_inbox import acknowledge
from liaison_net.client.directory import Directory
from liaison_net.client.keystore import Keystore
from liaison_net.client.reading import believed_notice, check_received
from liaison_net.core import pseudonym, sealing
from liaison_net.core.envelope import Kind, Precedence
from liaison_net.core.ids import id_from_text, id_to_text, node_of
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import Handling, SourceReliability, Tlp
from liaison_net.core.signals import (
    NOTICE_ACK,
    NOTICE_ESCALATION,
    NOTICE_MATCH,
    Category,
    Confidence,
    Pseudonym,
    Severity,
    SignalAnnex,
    SignalPayload,
    desk_of,
)
from liaison_net.errors import LiaisonError, Malformed, NotFound

PRECEDENCE = {Severity.LOW: Precedence.ROUTINE, Severity.MEDIUM: Precedence.PRIORITY,
              Severity.HIGH: Precedence.IMMEDIATE, Severity.CRITICAL: Precedence.FLASH}

if TYPE_CHECKING:  # aiohttp: only for an annotation here, not at import
    from liaison_net.client.session import NodeSession


@click.group("signal", cls=Group)
def signal() -> None:
    """Raise, list, show and acknowledge radicalisation early-warning signals."""


@signal.command("raise")
@click.option("--category", required=True, type=click.Choice([c.value for c in Category]),
              help="The indicator observed (definitions in docs/signals.md).")
@click.option("--severity", required=True, type=click.Choice([s.label for s in Severity]),
              help="Sets the desks' acknowledgement deadline and the precedence.")
@click.option("--confidence", default="medium", show_default=True,
              type=click.Choice([c.value for c in Confidence]))
@click.option("--region", required=True, help="ISO 3166 code, e.g. NL-LI, BE-VLI, LU.")
@click.option("--valid-days", type=click.IntRange(1, 365), default=30, show_default=True)
@click.option("--text", required=True, help="What was observed (no names: use --subject-*).")
@click.option("--subject-name", help="The person's name; only its pseudonym leaves here.")
@click.option("--subject-birth-date", help="YYYY-MM-DD (or DD-MM-YYYY, DD/MM/YYYY).")
@click.option("--subject-document", default="", help="Identity document number, if known.")
@click.option("--justification", help="Why you match this person (audited by your node); "
                                       "required with --subject-name.")
@click.option("--share-with", required=True, help="Nodes whose desks get it, e.g. be,nl,lu.")
@click.option("--handling", type=click.Choice([h.value for h in Handling]), default="H2",
              show_default=True)
@click.option("--conditions", default="", help="The restrictions, required with H3.")
@click.option("--tlp", type=click.Choice([t.value for t in Tlp], case_sensitive=False),
              default="AMBER", show_default=True)
@click.option("--community", default="", help="The community, required with TLP GREEN.")
@click.option("--purpose", default="early detection of violent radicalisation",
              show_default=True)
@click.option("--retain-days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--source", type=click.Choice([s.value for s in SourceReliability]),
              default="B", show_default=True)
@click.option("--accuracy", type=click.IntRange(1, 4), default=3, show_default=True)
@click.option("--unit", default="liaison", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def raise_cmd(category: str, severity: str, confidence: str, region: str, valid_days: int,
              text: str, subject_name: str | None, subject_birth_date: str | None,
              subject_document: str, justification: str | None, share_with: str,
              handling: str, conditions: str, tlp: str, community: str, purpose: str,
              retain_days: int, source: str, accuracy: int, unit: str, as_json: bool,
              keystore_path: Path, passphrase_file: Path | None) -> None:
    """Send a signal to the duty desk of every other node its tag allows."""
    check_tag_options(handling=handling, tlp=tlp, conditions=conditions, community=community,
                      purpose=purpose, unit=unit)
    ks = load_keystore(keystore_path, passphrase_file)
    now = now_ms()
    nodes = comma_nodes(share_with) or frozenset()
    sev = Severity.from_label(severity)
    payload = SignalPayload(Category(category), sev, Confidence(confidence), region.upper(),
                            now, now + valid_days * DAY_MS, text).encode()
    identifiers = None
    if subject_name is not None or subject_birth_date is not None:
        if not subject_name or not subject_birth_date or not justification:
            raise Malformed("--subject-name, --subject-birth-date and --justification go "
                            "together")
        identifiers = pseudonym.normalise(subject_name, subject_birth_date, subject_document)
    tag = build_tag(own=ks.node, unit=unit, handling=handling, tlp=tlp, source=source,
                    accuracy=accuracy, share_with=nodes | {ks.node}, permit=(),
                    purpose=purpose, retain_until=now + retain_days * DAY_MS,
                    conditions=conditions, community=community)
    desks = [desk_of(n) for n in sorted(nodes - {ks.node})]
    if not desks:
        raise Malformed("--share-with names no other node: a signal goes to other countries")
    check_send(tag, desks, own=ks.node, now=now)

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            directory = await node.directory(now=cli_clock().host_now())
            warn_directory(directory)
            missing = [d for d in desks if d not in directory.cards]
            if missing:
                raise NotFound(f"no duty desk enrolled at {', '.join(missing)}")
            pseudonyms: tuple[Pseudonym, ...] = ()
            if identifiers is not None:
                blinded, blinding = pseudonym.blind(identifiers)
                evaluations = await node.evaluate_pseudonym(blinded, justification or "")
                pseudonyms = tuple(Pseudonym(kid, pseudonym.finalize(blinding, point, kid))
                                   for kid, point in evaluations)
            envelope = sealing.seal(
                sender=ks.officer, sender_key=ks.signing,
                recipients=[directory.recipient(d, now=now) for d in desks], tag=tag,
                plaintext=payload, now=now, expires=now + valid_days * DAY_MS,
                kind=Kind.SIGNAL, precedence=PRECEDENCE[sev],
                signal=SignalAnnex(sev, pseudonyms))
            result = await node.submit(envelope.to_bytes())
            return {"id": result.id, "status": result.status, "desks": desks,
                    "pseudonymised": bool(pseudonyms)}

    result = run(go())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{result['id']} {result['status']} for {', '.join(desks)}")


async def _notices(node: NodeSession, ks: Keystore, directory: Directory,
                   ref: bytes | None = None) -> list[dict[str, Any]]:
    """Signal notices in this officer's inbox (verified, opened), optionally about ``ref``."""
    found = []
    for entry in await node.inbox_all():
        if entry.kind != Kind.NOTICE.value:
            continue
        try:
            env = sealing.verify(await node.fetch(entry.id), directory.lookup(), now=None)
            # A notice is believed only as its node's own word (core/signers.py) under a
            # tag that holds (core/tagflow.py): an officer cannot fake a desk's ack.
            check_received(env, directory, own_node=ks.node, now=now_ms())
            fields = believed_notice(env, sealing.open_envelope(env, ks.officer,
                                                                ks.encryption_keys),
                                     reader_node=ks.node)
            # A match notice refers to the later signal but names both: it concerns either.
            about = {env.header.ref} | {id_from_text(str(i)) for i in fields.get("signals", [])
                                         if isinstance(i, str)}
            if ref is not None and ref not in about:
                continue
        except LiaisonError as exc:
            click.echo(f"warning: skipped notice {entry.id}: {exc.code}", err=True)
            continue
        if fields.get("type") in (NOTICE_ACK, NOTICE_ESCALATION, NOTICE_MATCH):
            found.append({**fields, "notice": entry.id, "from": env.header.sender,
                          "ref": id_to_text(env.header.ref) if env.header.ref else None})
    return found


@signal.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@keystore_options
def list_cmd(as_json: bool, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Signals you raised (with acknowledgements so far) and signals in your inbox."""
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            directory = await node.directory(now=cli_clock().host_now())
            raised = await node.raised_signals()
            notices = await _notices(node, ks, directory)
            incoming = [{"id": e.id, "from": e.sender, "received": e.relayed,
                         "acked": e.acked} for e in await node.inbox_all()
                        if e.kind == Kind.SIGNAL.value]
        acks: dict[str, list[str]] = {}
        for n in notices:
            if n["type"] == NOTICE_ACK:
                acks.setdefault(str(n["signal"]), []).append(str(n["node"]))
        return {"raised": [{**r, "acknowledged_by": sorted(acks.get(str(r["id"]), []))}
                           for r in raised], "incoming": incoming}

    result = run(go())
    if as_json:
        emit_json(result)
        return
    console = tables.console()
    table = tables.table("id", "severity", "acknowledged by", title="signals you raised")
    for r in result["raised"]:
        table.add_row(str(r["id"]), Severity(int(r["severity"])).label,
                      ", ".join(r["acknowledged_by"]) or "-")
    console.print(table)
    table = tables.table("id", "from", "acknowledged", title="signals for your desk")
    for r in result["incoming"]:
        table.add_row(r["id"], r["from"], "yes" if r["acked"] else "no")
    console.print(table)


@signal.command("show")
@click.argument("signal_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@keystore_options
def show_cmd(signal_id: str, as_json: bool, keystore_path: Path,
             passphrase_file: Path | None) -> None:
    """Who acknowledged signal ID and when, which desks are pending, escalations, matches."""
    ks = load_keystore(keystore_path, passphrase_file)
    wanted = id_from_text(signal_id.strip())

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            directory = await node.directory(now=cli_clock().host_now())
            env = sealing.verify(await node.fetch(id_to_text(wanted)), directory.lookup(),
                                 now=None)
            if env.header.kind is not Kind.SIGNAL or env.header.signal is None:
                raise Malformed(f"{signal_id} is not a signal")
            notices = await _notices(node, ks, directory, ref=wanted)
        desks = [r.officer for r in env.header.recipients]
        acks = {node_of(str(n["by"])): n for n in notices if n["type"] == NOTICE_ACK}
        return {
            "id": env.header.id_text, "severity": env.header.signal.severity.label,
            "sender": env.header.sender,
            "acknowledged": [{"desk": desk_of(nd), "by": n["by"], "at": n["at"]}
                             for nd, n in sorted(acks.items())],
            "pending": [d for d in desks if node_of(d) not in acks],
            "escalated": sorted({str(n["node"]) for n in notices
                                 if n["type"] == NOTICE_ESCALATION}),
            "matches": [{"signals": n["signals"], "countries": n["countries"]}
                        for n in notices if n["type"] == NOTICE_MATCH],
        }

    result = run(go())
    if as_json:
        emit_json(result)
        return
    click.echo(f"signal {result['id']} ({result['severity']}) from {result['sender']}")
    for a in result["acknowledged"]:
        when = datetime.fromtimestamp(int(a["at"]) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"  acknowledged by {a['by']} at {when} UTC")
    for d in result["pending"]:
        click.echo(f"  pending: {d}")
    for nd in result["escalated"]:
        click.echo(f"  escalated at {nd}: not acknowledged in time")
    for m in result["matches"]:
        click.echo(f"  match: signals {', '.join(m['signals'])} from "
                   f"{', '.join(m['countries'])} concern the same person")


@signal.command("ack")
@click.argument("signal_id", metavar="ID")
@keystore_options
def ack_cmd(signal_id: str, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Acknowledge signal ID for your desk; the sender is told, in a signed notice."""
    acknowledge(signal_id, keystore_path, passphrase_file)
