"""Four-eyes release: a second officer's signed decision about one held envelope.

Some envelopes (by default TLP:RED, handling H3, and signals of the highest severity; the
node's ``[four_eyes]`` policy) may leave their origin only once a second officer of the
sender's unit has approved them. The approval is a statement signed by that officer,
domain-separated, bound to the exact envelope (its id and the SHA-256 of its bytes, so
other bytes under the same id do not match), and it travels beside the envelope: every
node that receives it and the recipient's client check it with the same function here.

What one statement proves, and what it does not: that an officer of the sender's node,
not the sender, who claims the tag owner's unit, signed "approve" for these bytes. That
the officer belongs to that unit is the origin node's word (its ``[four_eyes] approvers``
list, checked when it records the approval): a card carries no unit.

Wire: ``[approver, body bytes, signature]``; the signature covers ``DOMAIN + body`` and is
verified (with the key of the officer named first) before the body is decoded.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from liaison_net.core import codec, crypto
from liaison_net.core.envelope import Envelope, Header, Kind
from liaison_net.core.ids import check_envelope_id, check_officer_id, node_of
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.core.signals import Severity
from liaison_net.errors import Malformed, PolicyRefused, UnknownKey

APPROVAL_DOMAIN = b"liaison-net/four-eyes-approval/v1\x00"
MAX_APPROVAL_BYTES = 4096
MAX_REASON_CHARS = 500
DIGEST_BYTES = 32
_FIELDS = {"envelope", "digest", "sender", "approver", "unit", "decision", "at", "reason"}
#: Kinds an officer writes that carry information: what a four-eyes policy may hold.
HELD_KINDS = frozenset({Kind.MESSAGE, Kind.REQUEST, Kind.REPLY, Kind.SIGNAL})


class Decision(enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True)
class Approval:
    envelope: bytes  # the held envelope's id
    digest: bytes  # SHA-256 of its exact bytes
    sender: str  # who signed the envelope (the first pair of eyes)
    approver: str  # who signs this (the second pair), never the sender
    unit: str  # the tag owner's unit the approver speaks for
    decision: Decision
    at: int  # ms
    reason: str = ""  # why, for a rejection (shown to the sender)

    def to_wire(self) -> dict[str, object]:
        return {"envelope": self.envelope, "digest": self.digest, "sender": self.sender,
                "approver": self.approver, "unit": self.unit,
                "decision": self.decision.value, "at": self.at, "reason": self.reason}


def envelope_digest(raw: bytes) -> bytes:
    """What an approval binds: the envelope's exact bytes, not only its id."""
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True)
class FourEyesPolicy:
    """Which envelopes need a second officer before they leave their origin."""

    tlp: frozenset[Tlp] = frozenset({Tlp.RED})
    handling: frozenset[Handling] = frozenset({Handling.H3})
    signal_severity: frozenset[Severity] = frozenset({max(Severity)})

    def covers(self, header: Header) -> bool:
        """True when ``header`` may leave its origin only with an approval: an officer's
        information (not node notices or evidence) under a tag or severity the policy
        names, owned by the sender's own node (a forward of another node's information
        is ruled by that owner's consent instead)."""
        if header.kind not in HELD_KINDS or header.tag.owner.node != node_of(header.sender):
            return False
        if header.tag.tlp in self.tlp or header.tag.handling in self.handling:
            return True
        return header.signal is not None and header.signal.severity in self.signal_severity


def make(envelope: Envelope, *, approver: str, decision: Decision, at: int,
         reason: str = "") -> Approval:
    """The statement ``approver`` signs about ``envelope`` (its bytes as they are)."""
    h = envelope.header
    return Approval(h.id, envelope_digest(envelope.to_bytes()), h.sender, approver,
                    h.tag.owner.unit, decision, at, reason)


def sign(approval: Approval, key: crypto.SigningKeyPair) -> bytes:
    _check(approval)
    body = codec.pack(approval.to_wire())
    return codec.pack([approval.approver, body, crypto.sign(key, APPROVAL_DOMAIN + body)])


def claimed_approver(raw: bytes) -> str:
    """The officer a statement names as its signer, read only to look up their key."""
    return _outer(raw)[0]


def verify(raw: bytes, signing_key: Callable[[str], bytes | None]) -> Approval:
    """The statement, if the officer it names signed it (``signing_key``: from the
    directory); nothing of the body is decoded before the signature verifies."""
    approver, body, signature = _outer(raw)
    public = signing_key(approver)
    if public is None:
        raise UnknownKey(f"approver {approver} is not in the directory")
    crypto.verify(public, APPROVAL_DOMAIN + body, signature)
    d = codec.exact_map("approval", codec.unpack(body, what="approval",
                                                 max_bytes=MAX_APPROVAL_BYTES), _FIELDS)
    if not isinstance(d["digest"], bytes) or len(d["digest"]) != DIGEST_BYTES:
        raise Malformed("approval digest must be 32 bytes")
    if not isinstance(d["at"], int) or isinstance(d["at"], bool) or d["at"] <= 0:
        raise Malformed("approval time must be milliseconds")
    for key in ("unit", "reason", "decision"):
        if not isinstance(d[key], str):
            raise Malformed(f"approval {key} must be text")
    try:
        decision = Decision(d["decision"])
    except ValueError:
        raise Malformed("approval decision must be approve or reject") from None
    approval = Approval(check_envelope_id(d["envelope"]), d["digest"],
                        check_officer_id(d["sender"], what="approval sender"),
                        check_officer_id(d["approver"], what="approver"), d["unit"],
                        decision, d["at"], d["reason"])
    if approval.approver != approver:
        raise Malformed("approval names another approver than its signer")
    _check(approval)
    return approval


def check_release(approval: Approval, envelope: Envelope, raw: bytes) -> None:
    """``approval`` releases exactly ``envelope`` (these bytes): an approval, for this id
    and digest, by an officer of the sender's node who is not the sender, for the tag
    owner's unit. Each failure is a ``PolicyRefused`` naming the rule."""
    h = envelope.header
    if approval.decision is not Decision.APPROVE:
        raise PolicyRefused("the four-eyes statement is a rejection, not an approval",
                            code="policy.four_eyes_rejected")
    if approval.envelope != h.id or not crypto.constant_time_equal(
            approval.digest, envelope_digest(raw)):
        raise PolicyRefused("the approval is for another envelope (id or bytes differ)",
                            code="policy.four_eyes_mismatch")
    if approval.sender != h.sender or approval.approver == h.sender:
        raise PolicyRefused("an envelope cannot be approved by its own sender",
                            code="policy.four_eyes_self")
    if node_of(approval.approver) != node_of(h.sender):
        raise PolicyRefused("the approver is not an officer of the sender's node",
                            code="policy.four_eyes_foreign")
    if approval.unit != h.tag.owner.unit:
        raise PolicyRefused("the approver speaks for another unit than the tag's owner",
                            code="policy.four_eyes_unit")
    if approval.at < h.created:
        raise PolicyRefused("the approval predates the envelope",
                            code="policy.four_eyes_mismatch")


def _outer(raw: bytes) -> tuple[str, bytes, bytes]:
    if not isinstance(raw, bytes):
        raise Malformed("approval must be bytes")
    value = codec.unpack(raw, what="approval", max_bytes=MAX_APPROVAL_BYTES)
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not isinstance(value[1], bytes) or not isinstance(value[2], bytes)):
        raise Malformed("approval must be [approver, body bytes, signature]")
    return check_officer_id(value[0], what="approver"), value[1], value[2]


def _check(a: Approval) -> None:
    if len(a.reason) > MAX_REASON_CHARS:
        raise Malformed(f"approval reason is longer than {MAX_REASON_CHARS} characters")
    if not a.unit or len(a.unit) > MAX_REASON_CHARS:
        raise Malformed("approval unit must be a short text")
    if a.decision is Decision.REJECT and not a.reason.strip():
        raise Malformed("a rejection says why (reason)")
