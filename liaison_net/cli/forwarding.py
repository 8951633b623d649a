"""`liaison forward` and `liaison consent request | grant`: passing information on, only
as far as its owner allows.

A forward carries the original's tag and names the original in ``ref``; it is decided as
FORWARD by this client, by the forwarder's node, by the destination node and by the
receiving client. Where the tag forbids it (H2, TLP:RED, AMBER+STRICT outside the
organisation, outside share_with, not in permitted_actions), the owner can still allow
exactly one forward: `consent grant` signs a consent for one original, one forwarder and
one recipient (officer or country), which rides in the forward's header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from liaison_net.cli.commands import Command, Group
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    emit_json,
    keystore_options,
    load_keystore,
    node_session,
    now_ms,
    run,
)
from liaison_net.client import reading
from liaison_net.client.directory import Directory
from liaison_net.client.keystore import Keystore
from liaison_net.client.session import NodeSession
from liaison_net.core import content as content_mod
from liaison_net.core import sealing, tagflow
from liaison_net.core.consent import Consent, sign_consent, verify_consent
from liaison_net.core.envelope import Envelope, Kind, Precedence, Urgency
from liaison_net.core.ids import check_node_id, check_officer_id, id_from_text, node_of
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    SourceReliability,
    Tlp,
)
from liaison_net.core.retention import make_skeleton
from liaison_net.errors import Forbidden, NotFound, PolicyRefused
from liaison_net.pki import certificates

CONSENT_MEDIA_TYPE = "application/x-liaison-consent"


async def _verified(node: NodeSession, envelope_id: str) -> tuple[Envelope, Directory]:
    """Fetch an envelope this officer may see (received or sent) and verify it."""
    directory = await node.directory(now=cli_clock().host_now())
    envelope = sealing.verify(await node.fetch(envelope_id), directory.lookup(), now=None)
    if envelope.id != id_from_text(envelope_id):
        raise Forbidden("the node answered with a different envelope than the one asked for")
    return envelope, directory


async def _open(node: NodeSession, ks: Keystore, envelope_id: str) -> tuple[Envelope, bytes,
                                                                             Directory]:
    """Verify, check and open an envelope sealed for this officer (as reading does)."""
    envelope, directory = await _verified(node, envelope_id)
    reading.check_received(envelope, directory, own_node=ks.node, now=now_ms())
    return envelope, sealing.open_envelope(envelope, ks.officer, ks.encryption_keys), directory


@click.command("forward", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--to", "recipients", multiple=True, required=True, help="Officer id.")
@click.option("--consent", "consent_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A consent file from the owner (`liaison consent grant --out`).")
@click.option("--consent-from", "consent_reply",
              help="The id of the owner's reply that carries the consent.")
@click.option("--expires-hours", type=click.IntRange(1, 30 * 24), default=72,
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def forward_cmd(envelope_id: str, recipients: tuple[str, ...], consent_file: Path | None,
                consent_reply: str | None, expires_hours: int, as_json: bool,
                keystore_path: Path, passphrase_file: Path | None) -> None:
    """Pass envelope ID on, under its own tag; refused here when the tag forbids it."""
    to = list(dict.fromkeys(check_officer_id(r, what="--to") for r in recipients))
    if consent_file is not None and consent_reply is not None:
        raise click.UsageError("give either --consent or --consent-from, not both")
    ks = load_keystore(keystore_path, passphrase_file)
    consent = consent_file.read_bytes() if consent_file is not None else None

    async def go() -> dict[str, Any]:
        async with node_session(ks, keystore_path) as node:
            original, plaintext, directory = await _open(node, ks, envelope_id)
            consent_bytes = consent
            if consent_reply is not None:
                consent_bytes = await _consent_from_reply(node, ks, consent_reply)
            now = now_ms()
            envelope = sealing.seal(
                sender=ks.officer, sender_key=ks.signing,
                recipients=[directory.recipient(r, now=now) for r in to],
                tag=original.header.tag, plaintext=plaintext, now=now,
                expires=min(now + expires_hours * HOUR_MS, original.header.tag.retain_until),
                kind=Kind.MESSAGE, precedence=original.header.precedence,
                ref=original.id, consent=consent_bytes,
                original=make_skeleton(original.to_bytes()))
            # The sending client's decision, with the reason, before anything leaves: the
            # same check its node and every later party make.
            try:
                tagflow.check(envelope.header, layer=tagflow.Layer.ORIGIN, here=ks.node,
                              now=now, lookup=directory.lookup(),
                              officer_key=reading.officer_key(directory))
            except PolicyRefused as exc:
                if consent_bytes is not None or exc.code not in CONSENT_CAN_ALLOW:
                    raise
                raise PolicyRefused(f"{exc.detail}; {_consent_hint(original, to)}",
                                    code=exc.code) from None
            result = await node.submit(envelope.to_bytes())
            return {"id": result.id, "status": result.status, "forwarded": original.header
                    .id_text, "recipients": to, "with_consent": consent_bytes is not None}

    result = run(go())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{result['id']} {result['status']}: forward of {result['forwarded']} "
                   f"to {', '.join(to)}")


#: Refusals of a forward that the owner's consent lifts (policy.decide: consent overrides
#: everything but retention): the refusal then says how to ask for one.
CONSENT_CAN_ALLOW = frozenset({"policy.tlp_red", "policy.tlp_own_organisation",
                               "policy.share_with", "policy.handling_consent",
                               "policy.not_permitted"})


def _consent_hint(original: Envelope, to: list[str]) -> str:
    oid = original.header.id_text
    target = to[0] if len(to) == 1 else "OFFICER"
    return (f"its owner can allow this one forward: `liaison consent request {oid} --for "
            f"{target} --reason TEXT`, then `liaison forward {oid} --to {target} "
            "--consent-from REPLY_ID`" + ("" if len(to) == 1 else " (one consent, and one "
                                            "forward, per recipient)"))


async def _consent_from_reply(node: NodeSession, ks: Keystore, reply_id: str) -> bytes:
    reply, plaintext, _ = await _open(node, ks, reply_id)
    content = content_mod.decode(plaintext)
    for attachment in content.attachments:
        if attachment.media_type == CONSENT_MEDIA_TYPE:
            return attachment.data
    raise NotFound(f"{reply.header.id_text} carries no consent")


@click.group("consent", cls=Group)
def consent() -> None:
    """Ask an owner for consent to forward, or grant one as the owner."""


def _short_tag(own: str, other: str, purpose: str, now: int) -> OwnershipTag:
    return OwnershipTag(
        owner=Owner(own, "liaison"), handling=Handling.H0, tlp=Tlp.AMBER,
        evaluation=Evaluation(SourceReliability.A, InformationAccuracy.KNOWN_TRUE),
        share_with=frozenset({own, other}), permitted_actions=frozenset(), purpose=purpose,
        retain_until=now + 90 * DAY_MS).validate()


@consent.command("request")
@click.argument("envelope_id", metavar="ID")
@click.option("--for", "target", required=True,
              help="Who you want to pass it to: an officer id or a country's node id.")
@click.option("--reason", required=True, help="Why, for the owner to decide.")
@keystore_options
def request_cmd(envelope_id: str, target: str, reason: str, keystore_path: Path,
                passphrase_file: Path | None) -> None:
    """Ask the sender of envelope ID (its owner's officer) for consent to forward it."""
    target = check_officer_id(target) if "/" in target else check_node_id(target)
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> str:
        async with node_session(ks, keystore_path) as node:
            original, _, directory = await _open(node, ks, envelope_id)
            owner = original.header.sender
            now = now_ms()
            text = (f"{ks.officer} asks to forward {original.header.id_text} to {target}.\n"
                    f"Reason: {reason}\nTo allow it: liaison consent grant "
                    f"{original.header.id_text} --forwarder {ks.officer} --for {target}")
            envelope = sealing.seal(
                sender=ks.officer, sender_key=ks.signing,
                recipients=[directory.recipient(owner, now=now)],
                tag=_short_tag(ks.node, node_of(owner), "consent request", now),
                plaintext=content_mod.encode(content_mod.Content(
                    subject=f"Consent request: forward {original.header.id_text} to {target}",
                    text=text)),
                now=now, expires=now + 7 * DAY_MS, kind=Kind.REQUEST, urgency=Urgency.OTHER,
                precedence=Precedence.PRIORITY, ref=original.id)
            return (await node.submit(envelope.to_bytes())).id

    click.echo(f"asked for consent: request {run(go())}")


@consent.command("grant")
@click.argument("envelope_id", metavar="ID")
@click.option("--forwarder", required=True, help="The officer who may forward it.")
@click.option("--for", "target", required=True,
              help="The one officer (or country node id) it may go to.")
@click.option("--days", type=click.IntRange(1, 90), default=7, show_default=True,
              help="How long the consent is valid.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the consent to this file.")
@keystore_options
def grant_cmd(envelope_id: str, forwarder: str, target: str, days: int, out: Path | None,
              keystore_path: Path, passphrase_file: Path | None) -> None:
    """As the owner, consent to exactly one forward of envelope ID, and send the consent to
    the forwarder (a reply carrying it); the forward then passes every layer."""
    forwarder = check_officer_id(forwarder, what="--forwarder")
    target = check_officer_id(target) if "/" in target else check_node_id(target)
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> tuple[bytes, str]:
        async with node_session(ks, keystore_path) as node:
            # The owner may have sent it without being a recipient: verify, do not open.
            original, directory = await _verified(node, envelope_id)
            if original.header.tag.owner.node != ks.node:
                raise Forbidden(f"only an officer of {original.header.tag.owner} may consent")
            now = now_ms()
            raw = sign_consent(Consent(original.id, forwarder, target, ks.officer, now,
                                       now + days * DAY_MS), ks.signing)
            verify_consent(raw, reading.officer_key(directory))  # as every layer will
            # The reply answers the forwarder's consent request, if there is one, so that
            # the request is closed on both sides; otherwise it names the original.
            asked = await _consent_request(node, directory, original, forwarder)
            reply = sealing.seal(
                sender=ks.officer, sender_key=ks.signing,
                recipients=[directory.recipient(forwarder, now=now)],
                tag=_short_tag(ks.node, node_of(forwarder), "consent to forward", now),
                plaintext=content_mod.encode(content_mod.Content(
                    subject=f"Consent: forward {original.header.id_text} to {target}",
                    text=f"{ks.officer} consents to {forwarder} forwarding "
                         f"{original.header.id_text} to {target} for {days} days.",
                    attachments=(content_mod.Attachment(
                        f"consent-{original.header.id_text}.bin", CONSENT_MEDIA_TYPE, raw),))),
                now=now, expires=now + days * DAY_MS, kind=Kind.REPLY,
                precedence=Precedence.PRIORITY, ref=asked or original.id)
            return raw, (await node.submit(reply.to_bytes())).id

    raw, reply_id = run(go())
    if out is not None:
        certificates.write_public(out, raw)
    click.echo(f"consent sent to {forwarder} in reply {reply_id}"
               + (f", and written to {out}" if out else ""))
    click.echo(f"they forward with: liaison forward {envelope_id} --to ... "
               f"--consent-from {reply_id}")


async def _consent_request(node: NodeSession, directory: Directory, original: Envelope,
                           forwarder: str) -> bytes | None:
    """The newest open request of ``forwarder`` that asks about ``original`` (its ``ref``),
    verified; None if there is none."""
    found: list[tuple[int, bytes]] = []
    for row in await node.requests():
        if row.get("direction") != "incoming" or row.get("sender") != forwarder:
            continue
        request = sealing.verify(await node.fetch(str(row["id"])), directory.lookup(),
                                 now=None)
        if request.header.sender == forwarder and request.header.ref == original.id:
            found.append((request.header.created, request.id))
    return max(found)[1] if found else None


def register(cli: click.Group) -> None:
    cli.add_command(forward_cmd)
    cli.add_command(consent)
