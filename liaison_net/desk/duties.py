"""Requests and signals at the desk: the CLI's `requests`, `reply` and `signal`, as JSON.

Requests carry the legal due time of Directive (EU) 2023/977 in their signed header; the
page counts it down. Signals go to the duty desks of the nodes named; their
acknowledgements and matches come back as node notices, believed only when that node's
key signed them (``reading.believed_notice``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.client import reading, tagging
from liaison_net.core import content as content_mod
from liaison_net.core import pseudonym, sealing
from liaison_net.core.envelope import Kind, Precedence
from liaison_net.core.ids import id_from_text
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import Owner, OwnershipTag
from liaison_net.core.signals import (
    NOTICE_ACK,
    NOTICE_MATCH,
    Category,
    Confidence,
    Pseudonym,
    Severity,
    SignalAnnex,
    SignalPayload,
    desk_of,
)
from liaison_net.desk.officer import MAX_INBOX_SHOWN, DeskOfficer
from liaison_net.errors import Forbidden, LiaisonError, Malformed, NotFound

REPLY_TTL_MS = 7 * DAY_MS
MAX_REQUESTS_SHOWN = 200
MAX_NOTICES_READ = 200


async def requests(officer: DeskOfficer) -> dict[str, Any]:
    """Open requests, incoming and outgoing, each with the officer on the other side."""
    rows = (await officer.node.requests())[:MAX_REQUESTS_SHOWN]
    directory, _ = await officer.directory()
    out = []
    for row in rows:
        rid, direction = str(row.get("id", "")), str(row.get("direction", ""))
        other = str(row.get("sender", ""))
        if direction == "outgoing":  # the node lists the asker, who is us: name the asked
            try:
                envelope = sealing.verify(await officer.node.fetch(rid), directory.lookup(),
                                          now=None)
                other = ", ".join(r.officer for r in envelope.header.recipients)
            except LiaisonError as exc:
                other = f"(cannot verify: {exc.code})"
        due = row.get("due")
        out.append({"id": rid, "direction": direction, "officer": other,
                    "urgency": str(row.get("urgency", "")),
                    "due": due if type(due) is int else None,
                    "answered": bool(row.get("answered")),
                    "escalated": bool(row.get("escalated"))})
    return {"requests": out, "now": officer.now()}


async def reply(officer: DeskOfficer, request_id: str, text: str,
                late_reason: str) -> dict[str, Any]:
    """Answer request ID under its tag to the asker (the CLI's `reply`)."""
    directory, _ = await officer.directory()
    request = sealing.verify(await officer.node.fetch(request_id), directory.lookup(), now=None)
    h = request.header
    if request.id != id_from_text(request_id) or h.kind is not Kind.REQUEST or h.due is None:
        raise Malformed(f"{request_id} is not a request")
    if officer.ks.officer not in {r.officer for r in h.recipients}:
        raise Forbidden(f"{request_id} was not addressed to you")
    now = officer.now()
    late = now > h.due
    if late and not late_reason.strip():
        raise Malformed("the request is past its due time: a late reply must state a reason")
    body = text + (f"\n\nLate: {late_reason}" if late else "")
    envelope = sealing.seal(
        sender=officer.ks.officer, sender_key=officer.ks.signing,
        recipients=[directory.recipient(h.sender, now=now)],
        tag=reply_tag(h.tag, officer.ks.node, now=now),
        plaintext=content_mod.encode(content_mod.Content(subject=f"Re: request {h.id_text}",
                                                         text=body)),
        now=now, expires=now + REPLY_TTL_MS, kind=Kind.REPLY, ref=request.id,
        precedence=h.precedence)
    result = await officer.node.submit(envelope.to_bytes())
    officer.remember_sent({"id": result.id, "status": result.status, "to": [h.sender],
                             "subject": f"Re: request {h.id_text}", "sent": now,
                             "kind": Kind.REPLY.value})
    return {"id": result.id, "status": result.status, "late": late}


def reply_tag(tag: OwnershipTag, own: str, *, now: int) -> OwnershipTag:
    """A reply is the replier's own information, shared back under the request's handling
    and TLP (the CLI's rule, cli/requests.py)."""
    return OwnershipTag(owner=Owner(own, "liaison"), handling=tag.handling, tlp=tag.tlp,
                        evaluation=tag.evaluation, share_with=tag.share_with | {own},
                        permitted_actions=frozenset(), purpose=tag.purpose,
                        retain_until=max(tag.retain_until, now + 30 * DAY_MS),
                        conditions=tag.conditions, community=tag.community).validate()


SIGNAL_PRECEDENCE = {Severity.LOW: Precedence.ROUTINE, Severity.MEDIUM: Precedence.PRIORITY,
                     Severity.HIGH: Precedence.IMMEDIATE, Severity.CRITICAL: Precedence.FLASH}


@dataclass(frozen=True)
class Subject:
    """Who a signal is about, as typed: only its pseudonym leaves this process."""

    name: str
    birth_date: str
    document: str
    justification: str  # why this person is matched: audited by the home node


async def raise_signal(officer: DeskOfficer, *, category: str, severity: str, region: str,
                       share_with: frozenset[str], text: str, subject: Subject | None = None,
                       valid_days: int = 30, confidence: str = "medium") -> dict[str, Any]:
    """A signal to the duty desk of every other node named (the CLI's `signal raise`).
    With a subject, the identifiers are normalised and blinded here, the home node
    evaluates the network OPRF on the blinded point and the result is unblinded here:
    only the pseudonym, never a name, leaves this machine."""
    ks, now = officer.ks, officer.now()
    identifiers = None
    if subject is not None:
        if not subject.name.strip() or not subject.birth_date.strip() \
                or not subject.justification.strip():
            raise Malformed("a subject needs a name, a birth date and a justification")
        identifiers = pseudonym.normalise(subject.name, subject.birth_date, subject.document)
    sev = Severity.from_label(severity)
    payload = SignalPayload(Category(category), sev, Confidence(confidence), region.upper(),
                            now, now + valid_days * DAY_MS, text).encode()
    tag = tagging.build_tag(own=ks.node, unit="liaison", handling="H2", tlp="AMBER",
                            source="B", accuracy=3, share_with=share_with | {ks.node},
                            permit=(), purpose="early detection of violent radicalisation",
                            retain_until=now + 365 * DAY_MS, conditions="", community="")
    desks = [desk_of(n) for n in sorted(share_with - {ks.node})]
    if not desks:
        raise Malformed("name at least one other country: a signal goes to other countries")
    tagging.check_send(tag, desks, own=ks.node, now=now)
    directory, _ = await officer.directory(wanted=[ks.officer, *desks])
    missing = [d for d in desks if d not in directory.cards]
    if missing:
        raise NotFound(f"no duty desk enrolled at {', '.join(missing)}")
    pseudonyms: tuple[Pseudonym, ...] = ()
    if identifiers is not None and subject is not None:
        blinded, blinding = pseudonym.blind(identifiers)
        evaluations = await officer.node.evaluate_pseudonym(blinded, subject.justification)
        pseudonyms = tuple(Pseudonym(kid, pseudonym.finalize(blinding, point, kid))
                           for kid, point in evaluations)
    envelope = sealing.seal(
        sender=ks.officer, sender_key=ks.signing,
        recipients=[directory.recipient(d, now=now) for d in desks], tag=tag,
        plaintext=payload, now=now, expires=now + valid_days * DAY_MS, kind=Kind.SIGNAL,
        precedence=SIGNAL_PRECEDENCE[sev], signal=SignalAnnex(sev, pseudonyms))
    result = await officer.node.submit(envelope.to_bytes())
    return {"id": result.id, "status": result.status, "desks": desks,
            "pseudonymised": bool(pseudonyms)}


async def signals(officer: DeskOfficer) -> dict[str, Any]:
    """Signals for this desk, signals raised (with the desks that acknowledged) and
    matches, each notice believed only as its node's own signed word."""
    raised = await officer.node.raised_signals()
    entries = await officer.node.inbox_all(max_items=10 * MAX_INBOX_SHOWN)
    directory, _ = await officer.directory()
    acks: dict[str, set[str]] = {}
    matches = []
    for entry in [e for e in entries if e.kind == Kind.NOTICE.value][-MAX_NOTICES_READ:]:
        try:
            env = sealing.verify(await officer.node.fetch(entry.id), directory.lookup(),
                                 now=None)
            reading.check_received(env, directory, own_node=officer.ks.node,
                                   now=officer.now())
            fields = reading.believed_notice(env, sealing.open_envelope(
                env, officer.ks.officer, officer.ks.encryption_keys),
                reader_node=officer.ks.node)
        except LiaisonError as exc:
            officer.warnings.append(f"skipped notice {entry.id}: {exc.code}")
            continue
        if fields.get("type") == NOTICE_ACK:
            acks.setdefault(str(fields.get("signal")), set()).add(str(fields.get("node")))
        elif fields.get("type") == NOTICE_MATCH:
            matches.append({"signals": [str(s) for s in fields.get("signals", [])],
                            "countries": [str(c) for c in fields.get("countries", [])]})
    incoming = []
    for entry in [e for e in entries if e.kind == Kind.SIGNAL.value][-MAX_INBOX_SHOWN:]:
        summary = await officer.summary(entry)
        incoming.append({"id": entry.id, "from": entry.sender, "received": entry.relayed,
                         "acked": entry.acked, "subject": summary.subject,
                         "problem": summary.problem})
    incoming.sort(key=lambda s: (s["acked"] is not None, -_ms(s["received"])))
    return {
        "incoming": incoming,
        "raised": [{"id": str(r.get("id")),
                    "severity": _severity_label(r.get("severity")),
                    "acknowledged_by": sorted(acks.get(str(r.get("id")), set()))}
                   for r in raised[:MAX_REQUESTS_SHOWN]],
        "matches": matches[:MAX_REQUESTS_SHOWN],
    }


def _severity_label(value: object) -> str:
    try:
        return Severity(value).label if type(value) is int else "?"
    except ValueError:
        return "?"


def _ms(value: object) -> int:
    return value if type(value) is int else 0
