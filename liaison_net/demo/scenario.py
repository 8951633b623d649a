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
(g) NL sends a TLP:RED alert to BE: held at NL until the NL duty desk, a second officer of
    NL's liaison unit, approves it (``demo.four_eyes_step``); BE verifies the approval.
(f) Early-warning signals, raised as `liaison signal raise` does, fanned out to the BE and
    LU duty desks, refused for DE-NW's, acknowledged, and matched across borders: see
    ``demo.signal_steps``, which tells that part through this story's sessions.
(h) NL recalls the TLP:GREEN alert once read: BE, LU and DE-NW purge it and answer signed
    erasure receipts (``demo.recall_step``).

Each step records ``Delivery``/``Refusal`` rows and ``Check`` results in the ``Outcome``;
nothing here decides the exit code except through those checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from liaison_net.client.directory import Directory
from liaison_net.client.session import NodeSession
from liaison_net.core import content as content_mod
from liaison_net.core import sealing
from liaison_net.core.content import Content
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import node_of
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.ownership import Handling, OwnershipTag, PermittedAction, Tlp
from liaison_net.core.policy import Action, Request, require
from liaison_net.core.signals import SignalPayload
from liaison_net.demo import four_eyes_step, recall_step
from liaison_net.demo.forced import force_submit
from liaison_net.demo.network import Deadline, DemoError, DemoNetwork, DemoTimeout, Officer
from liaison_net.demo.report import Delivery, Outcome, Progress, Refusal
from liaison_net.demo.signal_steps import SignalSteps
from liaison_net.demo.story_types import (
    BENELUX,
    CLAUDE,
    EVERYONE,
    JAN,
    KATRIN,
    MARIE,
    POLL_S,
    SESSION_TIMEOUT_S,
    Refused,
    Sent,
    make_tag,
    now_ms,
)
from liaison_net.errors import NotFound, PolicyRefused

COMMUNITY = "Benelux and North Rhine-Westphalia police liaison network"


@dataclass(frozen=True)
class Alert:
    """An alert as its officer would type it into `liaison send`."""

    label: str
    sender: str
    recipients: tuple[str, ...]
    tag: OwnershipTag
    content: Content
    precedence: Precedence = Precedence.ROUTINE


def benelux_alert() -> Alert:
    return Alert(
        "A1 Benelux", JAN, (MARIE, CLAUDE),
        make_tag("nl", handling=Handling.H2, tlp=Tlp.AMBER, share_with=BENELUX,
                 purpose="prevention and investigation of organised property crime"),
        Content(subject="Ram-raid crew may cross into BE/LU tonight",
                text="Intelligence indicates that the crew behind last week's ATM ram-raids "
                     "in Noord-Brabant plans to move south tonight in a dark grey van.\n"
                     "H2: not to be disseminated without permission of NL liaison."))


def green_alert() -> Alert:
    return Alert(
        "A2 GREEN", JAN, (MARIE, CLAUDE, KATRIN),
        make_tag("nl", handling=Handling.H0, tlp=Tlp.GREEN, share_with=EVERYONE,
                 purpose="prevention of investment fraud", community=COMMUNITY,
                 permitted=frozenset({PermittedAction.FORWARD})),
        Content(subject="Fraudulent investment call centre: new numbers in use",
                text="The call centre reported in March now calls victims from new numbers "
                     "in the +31 and +49 ranges. Shared within the liaison community."))


def flash_alert() -> Alert:
    return Alert(
        "F1 FLASH", CLAUDE, (JAN, MARIE, KATRIN),
        make_tag("lu", handling=Handling.H0, tlp=Tlp.AMBER, share_with=EVERYONE,
                 purpose="arrest of armed robbery suspects"),
        Content(subject="FLASH: armed robbery suspects fleeing towards the borders",
                text="Two armed suspects left Luxembourg City ten minutes ago in a stolen "
                     "black estate car. Possible routes: A3 towards France, A6 towards "
                     "Belgium, A1 towards Germany. Do not approach: armed."),
        Precedence.FLASH)


class Story:
    """The whole story: the alerts here, the signals through ``signal_steps``."""

    def __init__(self, net: DemoNetwork, deadline: Deadline, progress: Progress,
                 outcome: Outcome) -> None:
        self.net = net
        self.deadline = deadline
        self.progress = progress
        self.outcome = outcome
        self.sessions: dict[str, NodeSession] = {}
        self.directories: dict[str, Directory] = {}
        self.sent: dict[str, Sent] = {}
        self.signal_steps = SignalSteps(self)  # step (f), told through this story

    def officer(self, officer_id: str) -> Officer:
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

            with p.step("(g) NL sends a TLP:RED alert: held until a second NL officer approves"
                        ) as n:
                n.append(await four_eyes_step.held_red_alert(self))

            await self.signal_steps.run()

            with p.step("Origin nodes report every hop delivered") as n:
                await self.hop_states()
                rows = self.outcome.deliveries
                n.append(f"{sum(d.hop == 'delivered' for d in rows)}/{len(rows)} delivered")

            with p.step("(h) NL recalls the TLP:GREEN alert: every holder purges it") as n:
                n.append(await recall_step.recall(self, sent_a2))
        self.check_story()
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
        sender = self.officer(alert.sender).keystore
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
        sent = self.record_sent(alert.label, alert.sender, alert.recipients, alert.content,
                          result.id)
        self.add_rows(sent, alert.tag, alert.precedence, "message")
        return sent

    def record_sent(self, label: str, sender: str, recipients: tuple[str, ...],
              expected: Content | SignalPayload, envelope_id: str) -> Sent:
        sent = Sent(label, sender, recipients, expected, envelope_id, time.monotonic())
        self.sent[sent.id] = sent
        return sent

    def add_rows(self, sent: Sent, tag: OwnershipTag, precedence: Precedence, kind: str) -> None:
        for recipient in sent.recipients:
            self.outcome.deliveries.append(Delivery(
                envelope=sent.id, alert=sent.label, sender=sent.sender, recipient=recipient,
                precedence=precedence.label, tlp=tag.tlp.value, handling=tag.handling.value,
                share_with=sorted(tag.share_with), kind=kind))

    async def refuse_for_de_nw(self, alert: Alert) -> None:
        out = self.outcome
        refusals = await self.attempt_forbidden(
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

    async def attempt_forbidden(self, label: str, sender: str, recipient: str, tag: OwnershipTag,
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
        status, code, detail = await force_submit(self.officer(sender), envelope.to_bytes(),
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
        keystore = self.officer(recipient).keystore
        raw = await session.fetch(sent.id)
        envelope = sealing.verify(raw, self.directories[recipient].lookup(), now=None)
        if envelope.header.id_text != sent.id:
            raise DemoError(f"node {keystore.node} answered another envelope for {sent.id}")
        require(envelope.header.tag, Request(Action.DELIVER, now_ms(), actor_node=keystore.node,
                                             target_node=keystore.node))
        plaintext = sealing.open_envelope(envelope, recipient, keystore.encryption_keys)
        row = self._row(sent.id, recipient)
        if envelope.header.kind is Kind.SIGNAL:
            content_ok, what = self.signal_steps.opened(recipient, sent, envelope, raw,
                                                        plaintext)
            verb = "opened"
        else:
            content = content_mod.decode(plaintext)
            content_ok = content == sent.expected
            what, verb = f"\"{content.subject}\"", "read"
        row.read = True
        row.content_ok = content_ok
        await session.ack(sent.id)
        self.progress.note(
            f"{recipient} {verb} {sent.label.split()[0]} {what} from "
            f"{envelope.header.sender}: verified, decrypted, acknowledged")
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
        self.signal_steps.check()
