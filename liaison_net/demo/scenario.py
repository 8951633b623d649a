"""The demo's story, told with the officer client library exactly as the `liaison` CLI does.

(a) NL (Jan de Vries) sends a Benelux-only alert (H2, TLP:AMBER, share_with be,nl,lu) to
    BE (Marie Peeters) and LU (Claude Schmit).
(b) The same alert for DE-NW (Katrin Müller) is refused on Jan's machine by policy
    (``policy.share_with``); sealed and forced through the officer API anyway, the NL node
    refuses it too (HTTP 403 ``policy.share_with``) and stores nothing.
(c) A second alert, TLP:GREEN within a named community and shared with de-nw, reaches DE-NW
    (and BE and LU).
(d) Every recipient fetches, verifies the signature, checks the tag (DELIVER), decrypts,
    compares with what was sealed, and acknowledges.
(e) LU sends a FLASH alert to NL, BE and DE-NW; it is read and acknowledged the same way.
(f) Early-warning signals, raised as `liaison signal raise` does: NL raises a signal
    (travel-to-conflict-zone, high, NL-LI, Benelux only) about a person who travels only as
    a subject pseudonym (normalised, blinded, evaluated by the NL node, unblinded on Jan's
    machine). It fans out to the BE and LU duty desks; for DE-NW's desk it is refused on
    Jan's machine and, forced, by the NL node, and DE-NW's desk inbox never holds it. Both
    desks open and acknowledge it, and Jan's inbox then holds the signed "signal-ack"
    notices of the BE and LU nodes. LU raises a second signal about the same person,
    spelled and dated differently, for the BE and NL desks (who open and acknowledge it
    too); the NL node, origin of the earlier signal, sends one "signal-match" notice to
    each owner. No name or birth date is found on any node's disk or in the envelopes.

Each step records ``Delivery``/``Refusal`` rows and ``Check`` results in the ``Outcome``;
nothing here decides the exit code except through those checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from liaison_net.cli.signals import PRECEDENCE as SIGNAL_PRECEDENCE
from liaison_net.client.directory import Directory
from liaison_net.client.reading import notice_fields
from liaison_net.client.session import (
    ENVELOPE_MEDIA_TYPE,
    NodeSession,
    officer_ssl_context,
)
from liaison_net.core import content as content_mod
from liaison_net.core import crypto, pseudonym, sealing
from liaison_net.core.content import Content
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import node_of, node_principal
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.login import login_message
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
from liaison_net.core.policy import Action, Request, require
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
from liaison_net.demo.network import Deadline, DemoError, DemoNetwork, DemoTimeout, Officer
from liaison_net.demo.report import Delivery, Notice, Outcome, Progress, Refusal, SignalRecord
from liaison_net.errors import NotFound, PolicyRefused, UnknownKey
from liaison_net.pki import node_hostname

JAN, MARIE, CLAUDE, KATRIN = "nl/jdevries", "be/mpeeters", "lu/cschmit", "de-nw/kmueller"
DE_NW_DESK = desk_of("de-nw")
POLL_S = 0.05
SESSION_TIMEOUT_S = 15.0
BENELUX = frozenset({"be", "nl", "lu"})
EVERYONE = frozenset({"be", "nl", "lu", "de-nw"})
COMMUNITY = "Benelux and North Rhine-Westphalia police liaison network"
SIGNAL_PURPOSE = "early detection of violent radicalisation"  # `liaison signal raise`'s default
SIGNAL_VALID_MS = 14 * DAY_MS


T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Alert:
    label: str
    sender: str
    recipients: tuple[str, ...]
    tag: OwnershipTag
    content: Content
    precedence: Precedence = Precedence.ROUTINE


@dataclass(frozen=True)
class SignalSpec:
    """A signal as its officer would type it into `liaison signal raise`."""

    label: str
    sender: str
    tag: OwnershipTag
    payload: SignalPayload
    subject_name: str  # stays on the sender's machine: only its pseudonym leaves
    subject_birth_date: str
    justification: str  # audited by the sender's node with the pseudonym evaluation

    @property
    def desks(self) -> tuple[str, ...]:
        """The duty desk of every other node the tag allows, as `signal raise` picks them."""
        own = node_of(self.sender)
        return tuple(desk_of(n) for n in sorted(self.tag.share_with - {own}))


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


@dataclass(frozen=True)
class ReadNotice:
    """A node notice in an officer's inbox, verified under the node's key and opened."""

    id: str
    sender: str  # the node principal that signed it, e.g. be/node
    fields: dict[str, Any]


def _tag(owner: str, *, handling: Handling, tlp: Tlp, share_with: frozenset[str],
         purpose: str, community: str = "",
         permitted: frozenset[PermittedAction] = frozenset()) -> OwnershipTag:
    return OwnershipTag(
        owner=Owner(owner, "liaison"), handling=handling, tlp=tlp,
        evaluation=Evaluation(SourceReliability.B, InformationAccuracy.KNOWN_TO_SOURCE),
        share_with=share_with, permitted_actions=permitted, purpose=purpose,
        retain_until=now_ms() + 30 * DAY_MS, community=community,
    ).validate()


def benelux_alert() -> Alert:
    return Alert(
        "A1 Benelux", JAN, (MARIE, CLAUDE),
        _tag("nl", handling=Handling.H2, tlp=Tlp.AMBER, share_with=BENELUX,
             purpose="prevention and investigation of organised property crime"),
        Content(subject="Ram-raid crew may cross into BE/LU tonight",
                text="Intelligence indicates that the crew behind last week's ATM ram-raids "
                     "in Noord-Brabant plans to move south tonight in a dark grey van.\n"
                     "H2: not to be disseminated without permission of NL liaison."))


def green_alert() -> Alert:
    return Alert(
        "A2 GREEN", JAN, (MARIE, CLAUDE, KATRIN),
        _tag("nl", handling=Handling.H0, tlp=Tlp.GREEN, share_with=EVERYONE,
             purpose="prevention of investment fraud", community=COMMUNITY,
             permitted=frozenset({PermittedAction.FORWARD})),
        Content(subject="Fraudulent investment call centre: new numbers in use",
                text="The call centre reported in March now calls victims from new numbers "
                     "in the +31 and +49 ranges. Shared within the liaison community."))


def flash_alert() -> Alert:
    return Alert(
        "F1 FLASH", CLAUDE, (JAN, MARIE, KATRIN),
        _tag("lu", handling=Handling.H0, tlp=Tlp.AMBER, share_with=EVERYONE,
             purpose="arrest of armed robbery suspects"),
        Content(subject="FLASH: armed robbery suspects fleeing towards the borders",
                text="Two armed suspects left Luxembourg City ten minutes ago in a stolen "
                     "black estate car. Possible routes: A3 towards France, A6 towards "
                     "Belgium, A1 towards Germany. Do not approach: armed."),
        Precedence.FLASH)


def _signal_tag(owner: str) -> OwnershipTag:
    return _tag(owner, handling=Handling.H2, tlp=Tlp.AMBER, share_with=BENELUX,
                purpose=SIGNAL_PURPOSE)


def nl_signal() -> SignalSpec:
    now = now_ms()
    return SignalSpec(
        "S1 signal", JAN, _signal_tag("nl"),
        SignalPayload(Category.TRAVEL, Severity.HIGH, Confidence.MEDIUM, "NL-LI", now,
                      now + SIGNAL_VALID_MS,
                      "Subject announced in a closed chat group that he will leave to join "
                      "an armed group abroad; he has bought a one-way ticket from Düsseldorf "
                      "airport for next week and sold his car in Venlo."),
        subject_name="Hendrik Schröder", subject_birth_date="1994-07-19",
        justification="NL-LI case 2026/0412: announced travel to a conflict zone")


def lu_signal() -> SignalSpec:
    """The same (fictitious) person as ``nl_signal``, written as a LU officer would."""
    now = now_ms()
    return SignalSpec(
        "S2 signal", CLAUDE, _signal_tag("lu"),
        SignalPayload(Category.TRAVEL, Severity.HIGH, Confidence.HIGH, "LU", now,
                      now + SIGNAL_VALID_MS,
                      "Subject stopped at a border check near Steinfort with camping gear, "
                      "cash and two new phones; said he was on his way to the Middle East."),
        subject_name="SCHROEDER, hendrik", subject_birth_date="19/07/1994",
        justification="LU border check 2026-117 at Steinfort: travel towards a conflict zone")


class Story:
    def __init__(self, net: DemoNetwork, deadline: Deadline, progress: Progress,
                 outcome: Outcome) -> None:
        self.net = net
        self.deadline = deadline
        self.progress = progress
        self.outcome = outcome
        self.sessions: dict[str, NodeSession] = {}
        self.directories: dict[str, Directory] = {}
        self.sent: dict[str, Sent] = {}
        self.notices: dict[str, dict[str, ReadNotice]] = {}  # officer -> notice id -> notice
        self.annexes: dict[str, SignalAnnex] = {}  # signal label -> the annex it was sent with
        self.seen: dict[tuple[str, str], tuple[Pseudonym, ...]] = {}  # (desk, id) -> annex
        self.raw_signals: list[bytes] = []  # the signals as the desks fetched them

    def _officer(self, officer_id: str) -> Officer:
        return self.net.officers[officer_id]

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self.deadline.left("starting the story")):
                await self._run()
        except TimeoutError:
            raise DemoTimeout(f"the demo's {self.deadline.total:g} s timeout ran out during "
                              "the story") from None

    async def _run(self) -> None:
        p = self.progress
        async with contextlib.AsyncExitStack() as stack:
            for oid, officer in self.net.officers.items():
                self.sessions[oid] = await stack.enter_async_context(
                    NodeSession(officer.keystore, timeout_s=SESSION_TIMEOUT_S))

            with p.step("Officer directory federated to all four nodes") as notes:
                await self.directories_federated()
                notes.append(f"{len(self.directories)} officers see all "
                             f"{len(self.net.officers)} cards")

            a1 = benelux_alert()
            with p.step("(a) NL sends a Benelux-only alert (H2, TLP:AMBER) to BE and LU") as n:
                sent_a1 = await self.send(a1)
                n.append(f"{sent_a1.id} accepted by node nl")

            with p.step("(b) The same Benelux-only alert for DE-NW is refused") as n:
                await self.refuse_for_de_nw(a1)
                n.append("refused on Jan's machine and by the NL node")
            for refusal in self.outcome.refusals:
                p.refused(refusal)

            a2 = green_alert()
            with p.step("(c) NL sends a TLP:GREEN community alert to BE, LU and DE-NW") as n:
                sent_a2 = await self.send(a2)
                n.append(f"{sent_a2.id} accepted by node nl")

            with p.step("(d) Recipients verify, decrypt and acknowledge") as n:
                await self.deliver_and_read([sent_a1, sent_a2])
                rows = [d for d in self.outcome.deliveries if d.envelope in
                        (sent_a1.id, sent_a2.id)]
                n.append(f"{sum(d.read for d in rows)}/{len(rows)} read, "
                         f"{sum(d.acked for d in rows)} acknowledged")

            with p.step("(e) LU sends a FLASH alert to NL, BE and DE-NW") as n:
                sent_f1 = await self.send(flash_alert())
                await self.deliver_and_read([sent_f1])
                rows = [d for d in self.outcome.deliveries if d.envelope == sent_f1.id]
                worst = max((d.latency_ms or 0) for d in rows)
                n.append(f"in every inbox within {worst} ms, "
                         f"{sum(d.acked for d in rows)}/{len(rows)} acknowledged")

            await self.signals()

            with p.step("Origin nodes report every hop delivered") as n:
                await self.hop_states()
                rows = self.outcome.deliveries
                n.append(f"{sum(d.hop == 'delivered' for d in rows)}/{len(rows)} delivered")
        self.check_story()

    async def signals(self) -> None:
        """(f) Early-warning signals: fan-out to the desks, refusal for DE-NW, the desks'
        acknowledgements back to the sender, and the cross-border match."""
        p, out = self.progress, self.outcome
        s1_spec = nl_signal()
        with p.step("(f1) NL raises an early-warning signal for the BE and LU duty desks") as n:
            s1 = await self.raise_signal(s1_spec)
            payload = s1_spec.payload
            n.append(f"{s1.id} accepted by node nl ({payload.category.value}, "
                     f"{payload.severity.label}, {payload.region}, shared with "
                     f"{','.join(sorted(s1_spec.tag.share_with))}); the subject left Jan's "
                     "machine only as a pseudonym")

        before = len(out.refusals)
        with p.step("(f2) The same Benelux-only signal for DE-NW's desk is refused") as n:
            await self.refuse_signal_for_de_nw(s1_spec)
            n.append("refused on Jan's machine and by the NL node")
        for refusal in out.refusals[before:]:
            p.refused(refusal)

        with p.step("(f3) The BE and LU desks open the signal and acknowledge; NL is told") as n:
            await self.deliver_and_read([s1])
            acks = await self.acknowledgements(s1)
            n.append(f"signal-ack signed by {', '.join(sorted(a.sender for a in acks))} "
                     "in Jan's inbox")

        s2_spec = lu_signal()
        with p.step("(f4) LU raises a signal about the same person, written differently") as n:
            s2 = await self.raise_signal(s2_spec)
            n.append(f"{s2.id} accepted by node lu for the BE and NL desks: "
                     f"\"{s2_spec.subject_name}\", {s2_spec.subject_birth_date} (NL wrote "
                     f"\"{s1_spec.subject_name}\", {s1_spec.subject_birth_date})")

        with p.step("(f5) The NL node matches the two signals and tells both owners") as n:
            _, matched = await asyncio.gather(self.deliver_and_read([s2]),
                                              self.match_notices(s1, s2))
            await self.acknowledgements(s2)
            senders = sorted({m.sender for found in matched.values() for m in found})
            n.append(f"signal-match signed by {', '.join(senders)} to "
                     f"{' and '.join(matched)}")
            shared = self.shared_pseudonym(desk_of("be"), s1, s2)
            if shared is not None:
                n.append(f"the BE desk saw pseudonym {shared.value.hex()[:12]}… on both, "
                         "never a name")

        with p.step("(f6) DE-NW's desk inbox and every node's disk checked") as n:
            out.de_nw_desk_signals = await self.signals_at(DE_NW_DESK)
            out.match_notices = {
                owner: sum(x.fields.get("type") == NOTICE_MATCH
                           for x in await self._read_notices(owner))
                for owner in (s1.sender, s2.sender)}
            out.names_in_clear, out.names_scanned = self.names_in_clear((s1_spec, s2_spec))
            n.append(f"{len(out.de_nw_desk_signals)} signals for de-nw/desk; "
                     f"{len(out.names_in_clear)} names or birth dates in clear in "
                     f"{out.names_scanned} node files and envelopes")

    # --- steps ------------------------------------------------------------------------------

    async def directories_federated(self) -> None:
        """Poll each officer's home node until the directory has every officer's card."""
        wanted = {oid: o.keystore.signing.public for oid, o in self.net.officers.items()}

        async def one(oid: str, session: NodeSession) -> None:
            while True:
                directory = await session.directory(now=datetime.now(UTC))
                cards = directory.cards
                if all(o in cards and cards[o].signing_public == key
                       for o, key in wanted.items()):
                    self.directories[oid] = directory
                    return
                await asyncio.sleep(POLL_S * 4)

        await asyncio.gather(*(one(oid, s) for oid, s in self.sessions.items()))
        self.outcome.check("officer directory federated to all four nodes",
                           len(self.directories) == len(self.sessions))

    def _client_check(self, alert: Alert, recipient: str, now: int) -> None:
        """What `liaison send` does before sealing: the tag must allow SEND to that node."""
        require(alert.tag, Request(Action.SEND, now, actor_node=node_of(alert.sender),
                                   target_node=node_of(recipient)))

    def _seal(self, alert: Alert, recipients: tuple[str, ...], now: int) -> Envelope:
        sender = self._officer(alert.sender).keystore
        directory = self.directories[alert.sender]
        return sealing.seal(
            sender=alert.sender, sender_key=sender.signing,
            recipients=[directory.recipient(r, now=now) for r in recipients],
            tag=alert.tag, plaintext=content_mod.encode(alert.content), now=now,
            expires=now + 8 * HOUR_MS, precedence=alert.precedence)

    async def send(self, alert: Alert) -> Sent:
        now = now_ms()
        for recipient in alert.recipients:
            self._client_check(alert, recipient, now)
        envelope = self._seal(alert, alert.recipients, now)
        result = await self.sessions[alert.sender].submit(envelope.to_bytes())
        if result.status != "accepted":
            raise DemoError(f"node answered {result.status!r} for a new envelope")
        sent = self._sent(alert.label, alert.sender, alert.recipients, alert.content,
                          result.id)
        self._rows(sent, alert.tag, alert.precedence, "message")
        return sent

    def _sent(self, label: str, sender: str, recipients: tuple[str, ...],
              expected: Content | SignalPayload, envelope_id: str) -> Sent:
        sent = Sent(label, sender, recipients, expected, envelope_id, time.monotonic())
        self.sent[sent.id] = sent
        return sent

    def _rows(self, sent: Sent, tag: OwnershipTag, precedence: Precedence, kind: str) -> None:
        for recipient in sent.recipients:
            self.outcome.deliveries.append(Delivery(
                envelope=sent.id, alert=sent.label, sender=sent.sender, recipient=recipient,
                precedence=precedence.label, tlp=tag.tlp.value, handling=tag.handling.value,
                share_with=sorted(tag.share_with), kind=kind))

    async def refuse_for_de_nw(self, alert: Alert) -> None:
        out = self.outcome
        refusals = await self._refused(
            alert.label, alert.sender, KATRIN, alert.tag,
            lambda: self._seal(alert, (KATRIN,), now_ms()))
        out.check("the sender's client refuses the Benelux-only alert for DE-NW",
                  refusals.client_code == "policy.share_with", "policy.share_with")
        node = node_of(alert.sender)
        out.check(f"the {node.upper()} node refuses it when forced through the API",
                  refusals.status == 403 and refusals.code == "policy.share_with",
                  f"HTTP {refusals.status} {refusals.code or '(no code)'}")
        out.check(f"the {node.upper()} node stored nothing for the refused envelope",
                  not refusals.stored)

    async def _refused(self, label: str, sender: str, recipient: str, tag: OwnershipTag,
                       seal: Callable[[], Envelope]) -> Refused:
        """Try to send to ``recipient`` what the tag forbids: on the sender's machine, then
        forced through the officer API. Records the refusals; says what happened."""
        out = self.outcome
        node = node_of(sender)
        # 1. On the sender's machine: the tag does not allow SEND to the recipient's node.
        client_code = ""
        try:
            require(tag, Request(Action.SEND, now_ms(), actor_node=node,
                                 target_node=node_of(recipient)))
        except PolicyRefused as exc:
            client_code = exc.code
            out.refusals.append(Refusal(label, sender, recipient, "client", exc.code, None,
                                        exc.detail))
        # 2. Forced: sealed anyway (sealing checks the tag's shape, not the policy) and
        #    posted straight to the officer API, as a modified client would.
        envelope = seal()
        status, code, detail = await force_submit(self._officer(sender), envelope.to_bytes(),
                                                  timeout_s=SESSION_TIMEOUT_S)
        if status >= 400:
            out.refusals.append(Refusal(label, sender, recipient, f"node:{node}", code,
                                        status, detail))
        # 3. Nothing was stored: the origin node does not know the envelope at all.
        try:
            await self.sessions[sender].status(envelope.header.id_text)
            stored = True
        except NotFound:
            stored = False
        return Refused(client_code, status, code, stored, envelope.header.id_text)

    async def deliver_and_read(self, batch: list[Sent]) -> None:
        """Wait until each envelope is in each recipient's inbox, then read and acknowledge."""
        by_recipient: dict[str, list[Sent]] = {}
        for sent in batch:
            for r in sent.recipients:
                by_recipient.setdefault(r, []).append(sent)
        await asyncio.gather(*(self._recipient(r, items) for r, items in by_recipient.items()))

    def _row(self, envelope_id: str, recipient: str) -> Delivery:
        return next(d for d in self.outcome.deliveries
                    if d.envelope == envelope_id and d.recipient == recipient)

    async def _recipient(self, recipient: str, items: list[Sent]) -> None:
        session = self.sessions[recipient]
        pending = {s.id: s for s in items}
        while pending:
            for entry in await session.inbox_all():
                sent = pending.pop(entry.id, None)
                if sent is not None:
                    row = self._row(sent.id, recipient)
                    row.delivered = True
                    row.latency_ms = int((time.monotonic() - sent.submitted) * 1000)
            if pending:
                await asyncio.sleep(POLL_S)
        for sent in items:
            await self._read(recipient, sent)
        # The node's own record of the acknowledgements.
        acked = {e.id for e in await session.inbox_all() if e.acked is not None}
        for sent in items:
            self._row(sent.id, recipient).acked = sent.id in acked

    async def _read(self, recipient: str, sent: Sent) -> None:
        """What `liaison read` and `liaison ack` do, on the recipient's machine."""
        session = self.sessions[recipient]
        keystore = self._officer(recipient).keystore
        raw = await session.fetch(sent.id)
        envelope = sealing.verify(raw, self.directories[recipient].lookup(), now=None)
        if envelope.header.id_text != sent.id:
            raise DemoError(f"node {keystore.node} answered another envelope for {sent.id}")
        require(envelope.header.tag, Request(Action.DELIVER, now_ms(), actor_node=keystore.node,
                                             target_node=keystore.node))
        plaintext = sealing.open_envelope(envelope, recipient, keystore.encryption_keys)
        row = self._row(sent.id, recipient)
        if envelope.header.kind is Kind.SIGNAL:
            # What `liaison read` shows a desk: the payload, and only a pseudonym in the annex.
            payload = SignalPayload.decode(plaintext)
            row.read = True
            row.content_ok = payload == sent.expected
            annex = envelope.header.signal
            self.seen[(recipient, sent.id)] = annex.pseudonyms if annex is not None else ()
            self.raw_signals.append(raw)
            what = (f"{payload.category.value} ({payload.severity.label}, "
                    f"{payload.region})")
            verb = "opened"
        else:
            content = content_mod.decode(plaintext)
            row.read = True
            row.content_ok = content == sent.expected
            what, verb = f"\"{content.subject}\"", "read"
        await session.ack(sent.id)
        self.progress.note(
            f"{recipient} {verb} {sent.label.split()[0]} {what} from "
            f"{envelope.header.sender}: verified, decrypted, acknowledged")

    # --- early-warning signals -------------------------------------------------------------

    async def _until(self, what: str, attempt: Callable[[], Awaitable[T | None]]) -> T:
        """Poll ``attempt()`` until it returns something truthy, within the demo's deadline."""
        while True:
            value = await attempt()
            if value:
                return value
            await asyncio.sleep(min(POLL_S, self.deadline.left(what)))

    def _seal_signal(self, spec: SignalSpec, recipients: tuple[str, ...], annex: SignalAnnex,
                     now: int) -> Envelope:
        sender = self._officer(spec.sender).keystore
        directory = self.directories[spec.sender]
        return sealing.seal(
            sender=spec.sender, sender_key=sender.signing,
            recipients=[directory.recipient(r, now=now) for r in recipients], tag=spec.tag,
            plaintext=spec.payload.encode(), now=now, expires=spec.payload.valid_until,
            kind=Kind.SIGNAL, precedence=SIGNAL_PRECEDENCE[spec.payload.severity],
            signal=annex)

    async def raise_signal(self, spec: SignalSpec) -> Sent:
        """What `liaison signal raise` does on the officer's machine: check the tag for every
        desk, pseudonymise the subject (normalise, blind; the node evaluates the blinded
        point; unblind), seal for the desks with the pseudonyms in the annex, submit."""
        now = now_ms()
        desks = spec.desks
        for desk in desks:
            require(spec.tag, Request(Action.SEND, now, actor_node=node_of(spec.sender),
                                      target_node=node_of(desk)))
        missing = [d for d in desks if d not in self.directories[spec.sender].cards]
        if missing:
            raise DemoError(f"no duty desk enrolled at {', '.join(missing)}")
        identifiers = pseudonym.normalise(spec.subject_name, spec.subject_birth_date)
        blinded, blinding = pseudonym.blind(identifiers)
        session = self.sessions[spec.sender]
        evaluations = await session.evaluate_pseudonym(blinded, spec.justification)
        annex = SignalAnnex(spec.payload.severity, tuple(
            Pseudonym(kid, pseudonym.finalize(blinding, point, kid))
            for kid, point in evaluations))
        envelope = self._seal_signal(spec, desks, annex, now)
        result = await session.submit(envelope.to_bytes())
        if result.status != "accepted":
            raise DemoError(f"node answered {result.status!r} for a new signal")
        self.annexes[spec.label] = annex
        sent = self._sent(spec.label, spec.sender, desks, spec.payload, result.id)
        self._rows(sent, spec.tag, SIGNAL_PRECEDENCE[spec.payload.severity], "signal")
        self.outcome.signals.append(SignalRecord(
            label=spec.label, id=sent.id, sender=spec.sender, desks=list(desks),
            category=spec.payload.category.value, severity=spec.payload.severity.label,
            region=spec.payload.region, share_with=sorted(spec.tag.share_with),
            pseudonyms=len(annex.pseudonyms)))
        return sent

    async def refuse_signal_for_de_nw(self, spec: SignalSpec) -> None:
        annex = self.annexes[spec.label]
        forced: list[bytes] = []

        def seal() -> Envelope:
            envelope = self._seal_signal(spec, (DE_NW_DESK,), annex, now_ms())
            forced.append(envelope.to_bytes())
            return envelope

        refused = await self._refused(spec.label, spec.sender, DE_NW_DESK, spec.tag, seal)
        self.raw_signals.extend(forced)  # it left Jan's machine too: no name in it either
        node = node_of(spec.sender).upper()
        self.outcome.signal_check(
            f"the Benelux-only signal for DE-NW's desk is refused by the sender's client and "
            f"by the {node} node",
            refused.client_code == "policy.share_with" and refused.status == 403
            and refused.code == "policy.share_with" and not refused.stored,
            f"client {refused.client_code or 'let it through'}; node HTTP {refused.status} "
            f"{refused.code or '(no code)'}; {'stored!' if refused.stored else 'nothing stored'}")

    async def _read_notices(self, officer: str) -> list[ReadNotice]:
        """The node notices in ``officer``'s inbox, verified under the signing node's key and
        opened with the officer's keys, as `liaison signal show` reads them."""
        seen = self.notices.setdefault(officer, {})
        session = self.sessions[officer]
        keystore = self._officer(officer).keystore
        for entry in await session.inbox_all():
            if entry.kind != Kind.NOTICE.value or entry.id in seen:
                continue
            raw = await session.fetch(entry.id)
            try:
                envelope = sealing.verify(raw, self.directories[officer].lookup(), now=None)
            except UnknownKey:
                # Signed by a node key this officer's directory did not have yet.
                self.directories[officer] = await session.directory(now=datetime.now(UTC))
                envelope = sealing.verify(raw, self.directories[officer].lookup(), now=None)
            fields = notice_fields(sealing.open_envelope(envelope, officer,
                                                         keystore.encryption_keys))
            seen[entry.id] = ReadNotice(entry.id, envelope.header.sender, fields)
        return list(seen.values())

    async def acknowledgements(self, sent: Sent) -> list[ReadNotice]:
        """Wait until the sender's inbox holds the "signal-ack" notice of every desk's node."""
        wanted = {node_of(d) for d in sent.recipients}

        async def arrived() -> list[ReadNotice] | None:
            acks = [n for n in await self._read_notices(sent.sender)
                    if n.fields.get("type") == NOTICE_ACK and n.fields.get("signal") == sent.id
                    and n.fields.get("node") in wanted]
            return acks if {n.fields.get("node") for n in acks} == wanted else None

        acks = await self._until(f"waiting for the desks' acknowledgements of {sent.label} "
                                 f"at {sent.sender}", arrived)
        for n in acks:
            node = str(n.fields.get("node"))
            self.outcome.notices.append(Notice(
                id=n.id, type=NOTICE_ACK, sender=n.sender, recipient=sent.sender,
                about=[sent.id], detail=f"{sent.label.split()[0]} acknowledged by "
                                        f"{n.fields.get('by')}",
                ok=n.sender == node_principal(node) and n.fields.get("by") == desk_of(node)))
        return acks

    async def match_notices(self, earlier: Sent, later: Sent) -> dict[str, list[ReadNotice]]:
        """Wait until both owners hold the "signal-match" notice naming the two signals."""
        pair = [earlier.id, later.id]
        origin = node_principal(node_of(earlier.sender))
        countries = sorted({node_of(earlier.sender), node_of(later.sender)})

        async def arrived(owner: str) -> list[ReadNotice] | None:
            return [n for n in await self._read_notices(owner)
                    if n.fields.get("type") == NOTICE_MATCH
                    and n.fields.get("signals") == pair] or None

        owners = (earlier.sender, later.sender)
        found = await asyncio.gather(*(self._until(
            f"waiting for the match notice at {owner}", functools.partial(arrived, owner))
            for owner in owners))
        for owner, notices in zip(owners, found, strict=True):
            for n in notices:
                self.outcome.notices.append(Notice(
                    id=n.id, type=NOTICE_MATCH, sender=n.sender, recipient=owner, about=pair,
                    detail=f"{earlier.label.split()[0]} and {later.label.split()[0]} concern "
                           f"the same person ({', '.join(countries)})",
                    ok=n.sender == origin and n.fields.get("countries") == countries))
        return dict(zip(owners, found, strict=True))

    def shared_pseudonym(self, desk: str, a: Sent, b: Sent) -> Pseudonym | None:
        """A pseudonym the desk saw in the annex of both signals, if any."""
        common = set(self.seen.get((desk, a.id), ())) & set(self.seen.get((desk, b.id), ()))
        return min(common, key=lambda x: x.key_id) if common else None

    async def signals_at(self, desk: str) -> list[str]:
        """Every signal in ``desk``'s inbox, acknowledged or not."""
        return [e.id for e in await self.sessions[desk].inbox_all()
                if e.kind == Kind.SIGNAL.value]

    def names_in_clear(self, specs: tuple[SignalSpec, ...]) -> tuple[list[str], int]:
        """Look for each subject's name, name parts, birth date and normalised identifiers in
        every node's database and log, and in the signal envelopes that left the officers'
        machines. Returns what was found where, and how many files and envelopes were read."""
        needles: set[bytes] = set()
        for spec in specs:
            name = spec.subject_name.lower()
            needles |= {name.encode(), spec.subject_birth_date.encode(),
                        pseudonym.normalise(spec.subject_name, spec.subject_birth_date),
                        pseudonym.normalise_name(spec.subject_name).encode()}
            needles |= {part.encode() for part in name.replace(",", " ").split()
                        if len(part) >= 4}
        sources: list[tuple[str, bytes]] = []
        for sub in ("data", "logs"):
            for path in sorted(Path(self.net.root / sub).rglob("*")):
                if path.is_file():
                    sources.append((str(path), path.read_bytes()))
        sources += [(f"signal envelope {i + 1}", raw) for i, raw in enumerate(self.raw_signals)]
        found = [f"{needle.decode(errors='replace')!r} in {where}"
                 for where, data in sources for needle in sorted(needles)
                 if needle in data.lower()]
        return found, len(sources)

    async def hop_states(self) -> None:
        """Each sender's node: the state of every hop (poll until none is still queued)."""
        for sent in self.sent.values():
            session = self.sessions[sent.sender]
            origin = node_of(sent.sender)
            while True:
                status = await session.status(sent.id)
                if all(h.state != "queued" for h in status.hops.values()):
                    break
                await asyncio.sleep(POLL_S)
            for r in sent.recipients:
                hop = status.hops.get(node_of(r))
                self._row(sent.id, r).hop = ("local" if node_of(r) == origin
                                             else hop.state if hop else "missing")

    # --- what the story expects -------------------------------------------------------------

    def check_story(self) -> None:
        out = self.outcome
        rows = out.deliveries

        def delivered(alert: str, recipient: str) -> bool:
            return any(d.alert == alert and d.recipient == recipient and d.delivered
                       for d in rows)

        out.check("the Benelux-only alert reached BE and LU",
                  delivered("A1 Benelux", MARIE) and delivered("A1 Benelux", CLAUDE))
        out.check("the TLP:GREEN alert reached DE-NW", delivered("A2 GREEN", KATRIN))
        leaked = [d for d in rows
                  if node_of(d.recipient) == "de-nw" and "de-nw" not in d.share_with]
        out.check("nothing Benelux-only reached DE-NW", not leaked)
        flash = [d for d in rows if d.precedence == "flash"]
        out.check("the FLASH alert reached every recipient",
                  bool(flash) and all(d.delivered for d in flash),
                  f"slowest {max((d.latency_ms or 0) for d in flash)} ms" if flash else "")
        out.check("every delivery verified, decrypted and matched what was sealed",
                  bool(rows) and all(d.read and d.content_ok for d in rows),
                  f"{sum(d.read and d.content_ok for d in rows)}/{len(rows)}")
        out.check("every delivery acknowledged", bool(rows) and all(d.acked for d in rows),
                  f"{sum(d.acked for d in rows)}/{len(rows)}")
        out.check("every inter-node hop delivered",
                  all(d.hop in ("delivered", "local") for d in rows))
        self.check_signals()

    def check_signals(self) -> None:
        out = self.outcome
        by_label = {s.label: s for s in out.signals}
        first, second = by_label.get("S1 signal"), by_label.get("S2 signal")
        if first is None or second is None:
            return
        rows = [d for d in out.deliveries if d.envelope == first.id]
        desks = {d.recipient: d for d in rows}
        out.signal_check("the signal reached the BE and LU desks",
                         sorted(desks) == [desk_of("be"), desk_of("lu")]
                         and all(d.delivered for d in rows),
                         ", ".join(f"{d.recipient} in {d.latency_ms} ms" for d in rows))
        leaked = [d for d in out.deliveries
                  if d.kind == "signal" and d.recipient == DE_NW_DESK and d.delivered]
        out.signal_check("DE-NW's desk never got the Benelux-only signal",
                         out.de_nw_desk_signals == [] and not leaked,
                         "its inbox holds no signal" if out.de_nw_desk_signals == [] else
                         f"its inbox holds {out.de_nw_desk_signals}")
        acks = [n for n in out.notices if n.type == NOTICE_ACK and n.about == [first.id]]
        out.signal_check("both desks acknowledged and the sender was told",
                         all(d.acked for d in rows) and len(rows) == 2
                         and len(acks) == 2 and all(n.ok for n in acks),
                         f"signal-ack signed by {', '.join(sorted(n.sender for n in acks))}")
        matches = [n for n in out.notices if n.type == NOTICE_MATCH]
        owners = sorted(n.recipient for n in matches)
        out.signal_check(
            "the same person raised by NL and LU was matched, with one notice to each owner, "
            "and no name left either officer's machine",
            len(matches) == 2 and all(n.ok for n in matches)
            and owners == sorted([first.sender, second.sender])
            and all(n.about == [first.id, second.id] for n in matches)
            and out.match_notices == {first.sender: 1, second.sender: 1}
            and out.names_scanned > 0 and not out.names_in_clear,
            f"signal-match signed by {', '.join(sorted({n.sender for n in matches}))}; "
            + (f"no name in {out.names_scanned} node files and envelopes"
               if not out.names_in_clear else "; ".join(out.names_in_clear[:3])))
        out.signals_checked = True


async def force_submit(officer: Officer, raw: bytes, *,
                       timeout_s: float) -> tuple[int, str, str]:
    """Log in and POST an envelope to the home node's officer API, skipping every client
    check: what a modified client could do. Returns (HTTP status, error code, detail)."""
    try:
        status, body = await _force_submit(officer, raw, timeout_s=timeout_s)
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError, TypeError) as exc:
        raise DemoError(f"forcing the envelope through {officer.keystore.node_url} failed: "
                        f"{type(exc).__name__}: {exc}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    return status, str(answer.get("error", "")), str(answer.get("detail", ""))[:300]


async def _force_submit(officer: Officer, raw: bytes, *, timeout_s: float) -> tuple[int, bytes]:
    ks = officer.keystore
    hostname = node_hostname(ks.node)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(ssl=officer_ssl_context(ks.ca_cert_pem))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        async with http.post(f"{ks.node_url}/api/v1/login/challenge",
                             json={"officer": ks.officer}, server_hostname=hostname) as resp:
            challenge = bytes.fromhex((await resp.json())["challenge"])
        signature = crypto.sign(ks.signing, login_message(ks.node, challenge))
        async with http.post(f"{ks.node_url}/api/v1/login", server_hostname=hostname,
                             json={"officer": ks.officer, "challenge": challenge.hex(),
                                   "signature": signature.hex()}) as resp:
            token = (await resp.json())["token"]
        async with http.post(f"{ks.node_url}/api/v1/envelopes", data=raw,
                             server_hostname=hostname,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": ENVELOPE_MEDIA_TYPE}) as resp:
            return resp.status, await resp.read()
