"""Four-eyes on the officer's machine (issue 19): the approver reviews and signs, the
reader verifies who released what it reads.

The approver's client verifies the held envelope's signature with the CA-verified
directory before signing anything, and signs over the digest of the bytes it verified
(``core/approval``), so a node that swapped the bytes gets an approval that releases
nothing. The reader's client checks the approval that came with an envelope against the
approver's card, with the same function every node runs.
"""

from __future__ import annotations

from liaison_net.client.directory import Directory
from liaison_net.core import approval as four_eyes
from liaison_net.core import crypto, sealing
from liaison_net.core.envelope import Envelope
from liaison_net.core.ids import id_from_text
from liaison_net.errors import Malformed


def review(raw: bytes, directory: Directory, envelope_id: str) -> Envelope:
    """The held envelope, verified under its sender's card; it must be the one asked."""
    envelope = sealing.verify(raw, directory.lookup(), now=None)
    if envelope.id != id_from_text(envelope_id):
        raise Malformed(f"the node answered another envelope than {envelope_id}")
    return envelope


def decision(envelope: Envelope, *, approver: str, key: crypto.SigningKeyPair,
             approve: bool, reason: str, now: int) -> bytes:
    """The signed statement: approve, or reject with the reason the sender will read."""
    return four_eyes.sign(four_eyes.make(
        envelope, approver=approver, at=now, reason=reason,
        decision=four_eyes.Decision.APPROVE if approve else four_eyes.Decision.REJECT), key)


def released_by(envelope: Envelope, statement: bytes | None,
                directory: Directory) -> four_eyes.Approval | None:
    """Who approved ``envelope`` (None: no approval came with it). An approval that does
    not verify under the approver's card, or releases other bytes, raises."""
    if statement is None:
        return None

    def key(officer: str) -> bytes | None:
        card = directory.cards.get(officer)
        return card.signing_public if card is not None else None

    approval = four_eyes.verify(statement, key)
    four_eyes.check_release(approval, envelope, envelope.to_bytes())
    return approval
