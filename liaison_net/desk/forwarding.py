"""Forwarding at the desk, the consent flow included (the CLI's `forward` and `consent`).

A forward carries the original's tag and names the original; this client decides it as
FORWARD (``tagflow.check`` at the ORIGIN layer, as the forwarder's node, the destination
node and the receiving client will) before anything leaves. Where the tag forbids it, the
officer asks the owner (a request to the original's sender); the owner grants exactly one
forward (a signed consent for one original, one forwarder, one recipient or country),
which arrives as a reply carrying the consent; the desk finds it in the inbox, verifies it
under the directory and puts it in the forward's header.
"""

from __future__ import annotations

from typing import Any

from liaison_net.client import reading
from liaison_net.client.directory import Directory
from liaison_net.core import content as content_mod
from liaison_net.core import sealing, tagflow
from liaison_net.core.consent import (
    CONSENT_MEDIA_TYPE,
    Consent,
    sign_consent,
    verify_consent,
)
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
from liaison_net.desk.officer import DeskOfficer
from liaison_net.errors import Forbidden, LiaisonError

FORWARD_TTL_MS = 72 * HOUR_MS
MAX_REPLIES_SEARCHED = 200  # newest replies looked through for a consent
MAX_REQUESTS_SEARCHED = 200


def check_target(target: str) -> str:
    """An officer id, or a node id for a whole country."""
    return check_officer_id(target) if "/" in target else check_node_id(target)


async def find_consent(officer: DeskOfficer, original: Envelope, to: str) -> bytes | None:
    """The newest consent in the inbox for this officer to forward ``original`` to ``to``,
    verified under the directory; None if there is none."""
    now = officer.now()
    entries = [e for e in await officer.node.inbox_all() if e.kind == Kind.REPLY.value]
    for entry in reversed(entries[-MAX_REPLIES_SEARCHED:]):
        try:
            _, plaintext, directory = await officer.opened(entry.id)
            content = content_mod.decode(plaintext)
            for attachment in content.attachments:
                if attachment.media_type != CONSENT_MEDIA_TYPE:
                    continue
                consent = verify_consent(attachment.data, reading.officer_key(directory))
                if (consent.original == original.id and consent.forwarder == officer.ks.officer
                        and consent.covers(to) and consent.expires > now):
                    return attachment.data
        except LiaisonError:
            continue  # not a consent we can believe: look further
    return None


async def forward(officer: DeskOfficer, envelope_id: str, to: str) -> dict[str, Any]:
    to = check_officer_id(to, what="to")
    ks = officer.ks
    original, plaintext, directory = await officer.opened(envelope_id)
    consent = await find_consent(officer, original, to)
    now = officer.now()
    envelope = sealing.seal(
        sender=ks.officer, sender_key=ks.signing,
        recipients=[directory.recipient(to, now=now)], tag=original.header.tag,
        plaintext=plaintext, now=now,
        expires=min(now + FORWARD_TTL_MS, original.header.tag.retain_until),
        kind=Kind.MESSAGE, precedence=original.header.precedence, ref=original.id,
        consent=consent, original=make_skeleton(original.to_bytes()))
    # The sending client's decision, with the reason, before anything leaves.
    tagflow.check(envelope.header, layer=tagflow.Layer.ORIGIN, here=ks.node, now=now,
                  lookup=directory.lookup(), officer_key=reading.officer_key(directory))
    result = await officer.node.submit(envelope.to_bytes())
    officer.remember_sent({"id": result.id, "status": result.status, "to": [to],
                             "subject": f"Forward of {original.header.id_text}", "sent": now,
                             "kind": Kind.MESSAGE.value})
    return {"id": result.id, "status": result.status, "forwarded": original.header.id_text,
            "consent": consent is not None}


def _short_tag(own: str, other: str, purpose: str, now: int) -> OwnershipTag:
    return OwnershipTag(
        owner=Owner(own, "liaison"), handling=Handling.H0, tlp=Tlp.AMBER,
        evaluation=Evaluation(SourceReliability.A, InformationAccuracy.KNOWN_TRUE),
        share_with=frozenset({own, other}), permitted_actions=frozenset(), purpose=purpose,
        retain_until=now + 90 * DAY_MS).validate()


async def ask_consent(officer: DeskOfficer, envelope_id: str, target: str,
                      reason: str) -> dict[str, Any]:
    """Ask the sender of envelope ID (its owner's officer) to consent to one forward."""
    target = check_target(target)
    ks = officer.ks
    original, _, directory = await officer.opened(envelope_id)
    owner = original.header.sender
    now = officer.now()
    text = (f"{ks.officer} asks to forward {original.header.id_text} to {target}.\n"
            f"Reason: {reason or '(none given)'}\nTo allow it: grant the consent in your "
            f"desk, or liaison consent grant {original.header.id_text} --forwarder "
            f"{ks.officer} --for {target}")
    envelope = sealing.seal(
        sender=ks.officer, sender_key=ks.signing,
        recipients=[directory.recipient(owner, now=now)],
        tag=_short_tag(ks.node, node_of(owner), "consent request", now),
        plaintext=content_mod.encode(content_mod.Content(
            subject=f"Consent request: forward {original.header.id_text} to {target}",
            text=text)),
        now=now, expires=now + 7 * DAY_MS, kind=Kind.REQUEST, urgency=Urgency.OTHER,
        precedence=Precedence.PRIORITY, ref=original.id)
    result = await officer.node.submit(envelope.to_bytes())
    return {"id": result.id, "status": result.status, "owner": owner}


async def grant_consent(officer: DeskOfficer, envelope_id: str, forwarder: str, target: str,
                        days: int) -> dict[str, Any]:
    """As the owner: consent to exactly one forward of envelope ID, sent to the forwarder
    as a reply (to their consent request, if there is one)."""
    forwarder = check_officer_id(forwarder, what="forwarder")
    target = check_target(target)
    ks = officer.ks
    directory, _ = await officer.directory(refresh=True)
    # The owner may have sent it without being a recipient: verify, do not open.
    original = sealing.verify(await officer.node.fetch(envelope_id), directory.lookup(),
                              now=None)
    if original.id != id_from_text(envelope_id):
        raise Forbidden("the node answered with a different envelope than the one asked for")
    if original.header.tag.owner.node != ks.node:
        raise Forbidden(f"only an officer of {original.header.tag.owner} may consent")
    now = officer.now()
    raw = sign_consent(Consent(original.id, forwarder, target, ks.officer, now,
                               now + days * DAY_MS), ks.signing)
    verify_consent(raw, reading.officer_key(directory))  # as every layer will
    asked = await _consent_request(officer, directory, original, forwarder)
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
    result = await officer.node.submit(reply.to_bytes())
    return {"id": result.id, "status": result.status, "forwarder": forwarder,
            "target": target}


async def _consent_request(officer: DeskOfficer, directory: Directory, original: Envelope,
                           forwarder: str) -> bytes | None:
    """The newest open request of ``forwarder`` about ``original``, verified; or None."""
    found: list[tuple[int, bytes]] = []
    for row in (await officer.node.requests())[:MAX_REQUESTS_SEARCHED]:
        if row.get("direction") != "incoming" or row.get("sender") != forwarder:
            continue
        try:
            request = sealing.verify(await officer.node.fetch(str(row.get("id"))),
                                     directory.lookup(), now=None)
        except LiaisonError:
            continue
        if request.header.sender == forwarder and request.header.ref == original.id:
            found.append((request.header.created, request.id))
    return max(found)[1] if found else None
