"""The cast of the demo's story and the small records both of its halves share.

The alerts (``demo.scenario``) and the early-warning signals (``demo.signal_steps``) are
sent by the same officers, tagged the same way and tracked with the same records; they
live here so that neither half imports the other for them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from liaison_net.core.content import Content
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    PermittedAction,
    SourceReliability,
    Tlp,
)
from liaison_net.core.signals import SignalPayload, desk_of

JAN, MARIE, CLAUDE, KATRIN = "nl/jdevries", "be/mpeeters", "lu/cschmit", "de-nw/kmueller"
DE_NW_DESK = desk_of("de-nw")
POLL_S = 0.05
SESSION_TIMEOUT_S = 15.0
BENELUX = frozenset({"be", "nl", "lu"})
EVERYONE = frozenset({"be", "nl", "lu", "de-nw"})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Sent:
    label: str
    sender: str
    recipients: tuple[str, ...]
    expected: Content | SignalPayload  # what each recipient must find when it decrypts
    id: str
    submitted: float  # time.monotonic() at submit


@dataclass(frozen=True)
class Refused:
    """What happened to one attempt to send where the tag forbids it."""

    client_code: str  # the sender's client's refusal code ("" if it let it through)
    status: int  # the node's HTTP status when forced through the API
    code: str  # the node's error code
    stored: bool  # whether the node knows the forced envelope afterwards
    envelope: str  # the forced envelope's id


def make_tag(owner: str, *, handling: Handling, tlp: Tlp, share_with: frozenset[str],
         purpose: str, community: str = "",
         permitted: frozenset[PermittedAction] = frozenset()) -> OwnershipTag:
    """A valid tag owned by ``owner``'s liaison unit, kept for 30 days."""
    return OwnershipTag(
        owner=Owner(owner, "liaison"), handling=handling, tlp=tlp,
        evaluation=Evaluation(SourceReliability.B, InformationAccuracy.KNOWN_TO_SOURCE),
        share_with=share_with, permitted_actions=permitted, purpose=purpose,
        retain_until=now_ms() + 30 * DAY_MS, community=community,
    ).validate()
