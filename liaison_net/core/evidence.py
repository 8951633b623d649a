"""Signed delivery evidence: who attests which step of an envelope's journey, and how the
sender decides whether to believe it.

Theory of operation
-------------------
Each step is attested by the one party that performed it, with its own key (as e-CODEX
gateways do, but carried on to the officer's own machine)::

    step       attested by (``maker``)           covers
    accepted   the origin node      <o>/node     every recipient the origin took it for
    relayed    the destination node <d>/node     one recipient: now in their inbox
    delivered  the recipient officer             one recipient: the verified envelope
                                                 reached their machine
    opened     the recipient officer             one recipient: decrypted and shown

A ``Statement`` is ``{v, step, envelope, recipients, by, at}`` in canonical msgpack, wrapped
as ``[signer key id, body, signature]`` with signature = Ed25519(DOMAIN || body). It travels
sealed for the original sender, as the content of an envelope of kind ``evidence`` whose
``ref`` names the envelope it reports on, so only the sender reads it. The statement bytes
verify on their own, without the envelope that carried them: the sender can keep them and
show them to anyone who holds the directory.

The sender believes a statement only when (1) its signature verifies under a key the
verified directory vouches for (``verify_statement``), (2) that key belongs to the principal
named in ``by``, and (3) it is about this envelope, names its recipients, and ``by`` is the
one party allowed to attest that step for that recipient (``check_about``). An officer
cannot claim "opened" for a colleague; a node cannot claim "relayed" into another node's
inbox. Every failure raises one of our errors; callers show it as a warning, never as
progress. Evidence is never issued about evidence or notices (``wants_evidence``).

Everything here is pure: time comes in as ``at`` and ``now``, keys as arguments.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec, crypto
from liaison_net.core.crypto import KEY_ID_BYTES, SIGNATURE_BYTES
from liaison_net.core.delivery import HopState
from liaison_net.core.envelope import Header, Kind
from liaison_net.core.ids import (
    NODE_HANDLE,
    check_envelope_id,
    check_officer_id,
    envelope_id_time_ms,
    id_to_text,
    node_of,
    node_principal,
)
from liaison_net.core.limits import DAY_MS, DEFAULT_LIMITS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    SourceReliability,
    Tlp,
)
from liaison_net.core.sealing import KeyLookup, SignerKey
from liaison_net.errors import BadTimestamp, Forbidden, LimitExceeded, Malformed, UnknownKey

DOMAIN = b"liaison-net/evidence/v1\x00"
VERSION = 1
MAX_STATEMENT_BYTES = 64 * 1024  # 1024 recipients of 48 characters fit, with room
MAX_RECIPIENTS = 1024  # the ceiling of limits.max_recipients
EVIDENCE_TTL_MS = 30 * DAY_MS  # an evidence envelope undelivered after this is dropped
EVIDENCE_RETENTION_MS = 365 * DAY_MS  # the sender keeps it to show later
_FIELDS = {"v", "step", "envelope", "recipients", "by", "at"}


class Step(enum.Enum):
    """The steps of a journey, in order."""

    ACCEPTED = "accepted"
    RELAYED = "relayed"
    DELIVERED = "delivered"
    OPENED = "opened"

    @property
    def by_node(self) -> bool:
        return self in (Step.ACCEPTED, Step.RELAYED)


@dataclass(frozen=True)
class Statement:
    step: Step
    envelope: bytes  # the envelope this statement reports on
    recipients: tuple[str, ...]  # sorted; exactly one except for ``accepted``
    by: str  # the maker: ``<node>/node`` or the recipient officer
    at: int  # ms, the maker's clock

    @property
    def recipient(self) -> str:
        """The one recipient of a per-recipient step."""
        if len(self.recipients) != 1:
            raise Malformed(f"an {self.step.value} statement covers several recipients")
        return self.recipients[0]

    def to_wire(self) -> dict[str, Any]:
        return {"v": VERSION, "step": self.step.value, "envelope": self.envelope,
                "recipients": list(self.recipients), "by": self.by, "at": self.at}


@dataclass(frozen=True)
class Attested:
    """A statement whose signature verified, with the signer and the exact signed bytes."""

    statement: Statement
    signer: SignerKey
    key_id: bytes
    raw: bytes


def wants_evidence(header: Header) -> bool:
    """Evidence is issued for what officers send, never about evidence or node notices."""
    return (header.kind not in (Kind.EVIDENCE, Kind.NOTICE)
            and header.sender.split("/")[1] != NODE_HANDLE)


def maker(step: Step, *, sender: str, recipient: str) -> str:
    """The one party that may attest ``step`` of an envelope from ``sender`` to ``recipient``."""
    if step is Step.ACCEPTED:
        return node_principal(node_of(sender))
    if step is Step.RELAYED:
        return node_principal(node_of(recipient))
    return check_officer_id(recipient, what="recipient")


def make(step: Step, header: Header, *, at: int, recipient: str | None = None) -> Statement:
    """The statement its maker signs about ``header``: ``accepted`` covers every recipient,
    the other steps the one ``recipient`` named."""
    everyone = tuple(sorted(r.officer for r in header.recipients))
    if step is Step.ACCEPTED:
        if recipient is not None:
            raise Malformed("an accepted statement covers every recipient, not one")
        recipients = everyone
    else:
        if recipient is None or recipient not in everyone:
            raise Malformed(f"{recipient} is not a recipient of {header.id_text}")
        recipients = (recipient,)
    statement = Statement(step, header.id, recipients,
                          maker(step, sender=header.sender, recipient=recipients[0]), at)
    _check_shape(statement)
    return statement


def sign_statement(statement: Statement, key: crypto.SigningKeyPair) -> bytes:
    """The signed statement bytes: ``[key id, body, Ed25519(DOMAIN || body)]``."""
    _check_shape(statement)
    body = codec.pack(statement.to_wire())
    return codec.pack([key.key_id, body, crypto.sign(key, DOMAIN + body)])


@dataclass(frozen=True)
class UnverifiedStatement:
    """The wrapper split, nothing in it trusted yet."""

    key_id: bytes
    body: bytes
    signature: bytes


def read_statement(raw: bytes) -> UnverifiedStatement:
    """Split the wrapper; check only its shape."""
    value = codec.unpack(raw, what="evidence statement", max_bytes=MAX_STATEMENT_BYTES)
    if not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(v, bytes) for v in value):
        raise Malformed("evidence statement must be [key id, body, signature] as bytes")
    key_id, body, signature = value
    if len(key_id) != KEY_ID_BYTES or len(signature) != SIGNATURE_BYTES:
        raise Malformed("evidence statement key id or signature has the wrong length")
    return UnverifiedStatement(key_id, body, signature)


def verify_statement(raw: bytes, lookup: KeyLookup) -> Attested:
    """The statement, if a key ``lookup`` vouches for signed exactly these bytes and belongs
    to the principal the statement names as its maker (``by``)."""
    unverified = read_statement(raw)
    signer = lookup(unverified.key_id)  # raises Revoked for a revoked key
    if signer is None:
        raise UnknownKey(f"evidence signed by key {unverified.key_id.hex()}, which the "
                         "directory does not know")
    crypto.verify(signer.public_key, DOMAIN + unverified.body, unverified.signature)
    statement = decode_body(unverified.body)  # the signer's own bytes: decode them now
    if statement.by != signer.principal:
        raise Forbidden(f"evidence claims to be by {statement.by} but was signed by "
                        f"{signer.principal}")
    return Attested(statement, signer, unverified.key_id, raw)


def claimed_statement(raw: bytes) -> Statement:
    """What a statement claims, NOT verified: only for showing it as a claim (``read``)."""
    return decode_body(read_statement(raw).body)


def decode_body(body: bytes) -> Statement:
    d = codec.exact_map("evidence statement", codec.unpack(
        body, what="evidence statement", max_bytes=MAX_STATEMENT_BYTES), _FIELDS)
    if d["v"] != VERSION or isinstance(d["v"], bool):
        raise Malformed(f"unsupported evidence statement version {d['v']!r:.20}")
    try:
        step = Step(d["step"])
    except (ValueError, TypeError) as exc:
        allowed = ", ".join(s.value for s in Step)
        raise Malformed(f"evidence step must be one of {allowed}, got {d['step']!r:.30}") \
            from exc
    recipients = d["recipients"]
    if not isinstance(recipients, list):
        raise Malformed("evidence recipients must be a list")
    at = d["at"]
    if not isinstance(at, int) or isinstance(at, bool):
        raise Malformed("evidence time must be an integer of milliseconds")
    statement = Statement(step, check_envelope_id(d["envelope"]),
                          tuple(check_officer_id(r, what="evidence recipient")
                                for r in recipients),
                          check_officer_id(d["by"], what="evidence maker"), at)
    _check_shape(statement)
    return statement


def _check_shape(s: Statement) -> None:
    """Rules about a statement on its own, whoever reads it, whenever."""
    if not 0 < s.at < 1 << 48:
        raise Malformed("evidence time out of range")
    if not s.recipients or len(s.recipients) > MAX_RECIPIENTS:
        raise LimitExceeded(f"evidence must name 1 to {MAX_RECIPIENTS} recipients")
    if list(s.recipients) != sorted(set(s.recipients)):
        raise Malformed("evidence recipients must be sorted and without duplicates")
    if s.step is not Step.ACCEPTED and len(s.recipients) != 1:
        raise Malformed(f"an {s.step.value} statement names exactly one recipient")


def check_about(statement: Statement, *, envelope_id: bytes, sender: str,
                recipients: Iterable[str], now: int,
                skew_ms: int = DEFAULT_LIMITS.max_clock_skew_ms) -> None:
    """Raise unless ``statement`` is about this envelope and its recipients, made by the
    one party allowed to attest its step, at a plausible time."""
    if statement.envelope != envelope_id:
        raise Forbidden(f"evidence is about {id_to_text(statement.envelope)}, not "
                        f"{id_to_text(envelope_id)}")
    addressed = set(recipients)
    for recipient in statement.recipients:
        if recipient not in addressed:
            raise Forbidden(f"evidence names {recipient}, who is not a recipient")
        expected = maker(statement.step, sender=sender, recipient=recipient)
        if statement.by != expected:
            raise Forbidden(f"{statement.by} cannot attest {statement.step.value} for "
                            f"{recipient}: only {expected} can")
    if statement.at < envelope_id_time_ms(envelope_id) - skew_ms:
        raise BadTimestamp("evidence is dated before the envelope was created")
    if statement.at > now + skew_ms:
        raise BadTimestamp("evidence is dated in the future")


# --- what an officer's client seals its own statements under ---------------------------------


def evidence_tag(*, own_node: str, sender_node: str, now: int) -> OwnershipTag:
    """The tag of an evidence envelope an officer sends back: owned by the officer's node,
    reaching only the original sender's node (facts about delivery, H0, AMBER)."""
    return OwnershipTag(
        owner=Owner(own_node, "delivery-evidence"), handling=Handling.H0, tlp=Tlp.AMBER,
        evaluation=Evaluation(SourceReliability.A, InformationAccuracy.KNOWN_TRUE),
        share_with=frozenset({own_node, sender_node}), permitted_actions=frozenset(),
        purpose="delivery evidence", retain_until=now + EVIDENCE_RETENTION_MS).validate()


# --- progress per recipient ------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What the sender can show for one recipient: each step's earliest attested time, and
    what the origin's own outbox says went wrong (refused with a reason, expired)."""

    officer: str
    accepted: int | None = None
    relayed: int | None = None
    delivered: int | None = None
    opened: int | None = None
    refused: str | None = None  # the reason, when the destination refused it
    expired: bool = False

    def at(self, step: Step) -> int | None:
        return {Step.ACCEPTED: self.accepted, Step.RELAYED: self.relayed,
                Step.DELIVERED: self.delivered, Step.OPENED: self.opened}[step]

    @property
    def state(self) -> str:
        """The furthest attested step; else refused or expired; else pending."""
        for step in (Step.OPENED, Step.DELIVERED, Step.RELAYED):
            if self.at(step) is not None:
                return str(step.value)
        if self.refused is not None:
            return "refused"
        if self.expired:
            return "expired"
        return "accepted" if self.accepted is not None else "pending"


def progress(recipients: Sequence[str], statements: Iterable[Statement],
             hops: Mapping[str, tuple[str, str | None]]) -> list[Progress]:
    """One ``Progress`` per recipient from verified statements and the hop states
    (node -> (state, reason)); a step attested twice counts at its earliest time."""
    times: dict[tuple[str, Step], int] = {}
    for s in statements:
        for officer in s.recipients:
            key = (officer, s.step)
            times[key] = min(times.get(key, s.at), s.at)
    out = []
    for officer in recipients:
        hop: tuple[str | None, str | None] = hops.get(node_of(officer), (None, None))
        state, reason = hop
        out.append(Progress(
            officer, accepted=times.get((officer, Step.ACCEPTED)),
            relayed=times.get((officer, Step.RELAYED)),
            delivered=times.get((officer, Step.DELIVERED)),
            opened=times.get((officer, Step.OPENED)),
            refused=(reason or "refused") if state == HopState.REFUSED.value else None,
            expired=state == HopState.EXPIRED.value))
    return out
