"""What the soak's officers send, and how they hand it to their home node.

Each officer sends alone, one envelope at a time, at a random pace: to one to three
colleagues anywhere in the network, under a mix of ownership tags (open to all four
nodes, Benelux only, bilateral; every handling code and TLP label) and precedences. A
share of envelopes is built to be refused by the origin: a Benelux-only tag addressed to
DE-NW (``policy.share_with``), or a tag claiming another node as owner
(``policy.owner_not_signer``: the owner must be the signer's node); those end in no inbox.

An officer whose node does not answer (killed, or restarting) retries the *same bytes*,
as the CLI's user would, until the node answers or their patience runs out: "duplicate"
then means the first try was stored, which is an acceptance too.

Beside alerts, a share of the traffic carries what a node owes more than delivery for
(``effects``): requests under Directive (EU) 2023/977, to colleagues anywhere (a due time
at the requester's and each addressee's node, the requester's own node included), and
consented forwards (a recipient passes a received envelope on to another officer, on
their own node or another, with a consent the original's sender signs; each node that
delivers it owes the owner a disclosure receipt).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from liaison_net import errors
from liaison_net.chaos.check import Outcome, Sent
from liaison_net.client.keystore import Keystore
from liaison_net.client.session import NodeSession
from liaison_net.core import sealing
from liaison_net.core.consent import Consent, sign_consent
from liaison_net.core.envelope import Envelope, Kind, Precedence, Urgency
from liaison_net.core.ids import node_of
from liaison_net.core.limits import DAY_MS, HOUR_MS
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
from liaison_net.core.retention import make_skeleton

BENELUX = frozenset({"be", "nl", "lu"})
RETRY_S = 0.25
#: Precedences, weighted as a liaison desk's traffic: mostly routine, a little flash.
PRECEDENCES = ((Precedence.ROUTINE, 6), (Precedence.PRIORITY, 3), (Precedence.IMMEDIATE, 2),
               (Precedence.FLASH, 1))


@dataclass(frozen=True)
class Draft:
    """An envelope before sealing: who, under which tag, and what the origin must say."""

    sender: str
    recipients: tuple[str, ...]
    tag: OwnershipTag
    precedence: Precedence
    expect_refusal: str | None  # e.g. "policy.share_with"
    urgency: Urgency | None = None  # a request (kind request) with this legal time limit


def _tag(rng: random.Random, owner_node: str, share_with: frozenset[str]) -> OwnershipTag:
    handling = rng.choice(list(Handling))
    tlp = rng.choice(list(Tlp))
    return OwnershipTag(
        owner=Owner(owner_node, "liaison"), handling=handling, tlp=tlp,
        evaluation=Evaluation(rng.choice(list(SourceReliability)),
                              rng.choice(list(InformationAccuracy))),
        share_with=share_with,
        permitted_actions=frozenset(rng.sample(list(PermittedAction), rng.randint(0, 2))),
        purpose="liaison chaos soak", retain_until=int(time.time() * 1000) + 30 * DAY_MS,
        conditions="no onward use without asking" if handling is Handling.H3 else "",
        community="benelux liaison" if tlp is Tlp.GREEN else "")


def compose(rng: random.Random, sender: str, officers: Sequence[str], nodes: Sequence[str],
            *, refuse_share: float, request_share: float = 0.0) -> Draft:
    """A random envelope from ``sender``; with probability ``refuse_share``, one the origin
    must refuse; of the others, a share ``request_share`` are requests."""
    home = node_of(sender)
    others = [o for o in officers if o != sender]
    precedence = rng.choices([p for p, _ in PRECEDENCES], [w for _, w in PRECEDENCES])[0]
    everyone = frozenset(nodes)
    if rng.random() < refuse_share:
        de_nw = [o for o in others if node_of(o) not in BENELUX]
        if home in BENELUX and de_nw:
            to = {rng.choice(de_nw), *rng.sample(others, rng.randint(0, 1))}
            return Draft(sender, tuple(sorted(to)), _tag(rng, home, BENELUX & everyone),
                         precedence, "policy.share_with")
        owner = rng.choice([n for n in nodes if n != home])
        to = set(rng.sample(others, rng.randint(1, min(2, len(others)))))
        return Draft(sender, tuple(sorted(to)), _tag(rng, owner, everyone), precedence,
                     "policy.owner_not_signer")
    urgency = rng.choice(list(Urgency)) if rng.random() < request_share else None
    to = set(rng.sample(others, rng.randint(1, min(3, len(others)))))
    reached = {node_of(o) for o in to} | {home}
    kind = rng.random()
    if home in BENELUX and reached <= BENELUX and kind < 0.4:
        share = BENELUX & everyone  # the usual Benelux-only alert
    elif kind < 0.6:
        share = frozenset(reached)  # exactly the nodes addressed
    else:
        share = everyone
    return Draft(sender, tuple(sorted(to)), _tag(rng, home, share), precedence, None, urgency)


def seal(draft: Draft, keystores: dict[str, Keystore], payload: bytes) -> Envelope:
    now = int(time.time() * 1000)
    sender = keystores[draft.sender]
    return sealing.seal(
        sender=draft.sender, sender_key=sender.signing,
        recipients=[sealing.RecipientKey(o, keystores[o].encryption.public)
                    for o in draft.recipients],
        tag=draft.tag, plaintext=payload, now=now, expires=now + 8 * HOUR_MS,
        kind=Kind.MESSAGE if draft.urgency is None else Kind.REQUEST,
        precedence=draft.precedence, urgency=draft.urgency)


def forward(original: Envelope, forwarder: Keystore, target: Keystore,
            owner: Keystore) -> Envelope:
    """``forwarder`` passes ``original`` (sealed for them) on to ``target`` under its own
    tag, with a consent ``owner`` (the original's sender, of the owning service) signs for
    exactly this forward, as `liaison consent grant` and `liaison forward` do."""
    now = int(time.time() * 1000)
    plaintext = sealing.open_envelope(original, forwarder.officer, forwarder.encryption_keys)
    consent = sign_consent(Consent(original.id, forwarder.officer, target.officer,
                                   owner.officer, now - 1000, now + DAY_MS), owner.signing)
    h = original.header
    return sealing.seal(
        sender=forwarder.officer, sender_key=forwarder.signing,
        recipients=[sealing.RecipientKey(target.officer, target.encryption.public)],
        tag=h.tag, plaintext=plaintext, now=now,
        expires=min(now + 8 * HOUR_MS, h.tag.retain_until), kind=Kind.MESSAGE,
        precedence=h.precedence, ref=original.id, consent=consent,
        original=make_skeleton(original.to_bytes()))


def transient(exc: errors.LiaisonError) -> bool:
    """Errors that say "not now" rather than "no": the node is down, restarting, busy."""
    return isinstance(exc, errors.NodeFault | errors.RateLimited)


async def submit(session: NodeSession, sent: Sent, raw: bytes, *, patience_s: float,
                 origin_down: Callable[[], bool],
                 on_accepted: Callable[[Sent], None]) -> None:
    """Offer ``raw`` until the origin answers or ``patience_s`` runs out; record in ``sent``."""
    give_up = time.monotonic() + patience_s
    while True:
        sent.attempts += 1
        if origin_down():
            sent.origin_was_down = True
        try:
            await session.submit(raw)
        except errors.LiaisonError as exc:
            sent.code = exc.code
            if isinstance(exc, errors.NodeFault) and not isinstance(exc, errors.Unavailable):
                sent.server_errors += 1
            if not transient(exc):
                sent.outcome = Outcome.REFUSED
                return
            if time.monotonic() + RETRY_S >= give_up:
                sent.outcome = Outcome.UNANSWERED
                return
            await asyncio.sleep(RETRY_S)
        else:
            sent.outcome = Outcome.ACCEPTED
            sent.code = None
            on_accepted(sent)
            return
