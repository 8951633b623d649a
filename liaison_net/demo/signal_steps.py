"""The early-warning signal part of the demo's story, step (f), raised as `liaison signal
raise` does.

NL raises a signal (travel-to-conflict-zone, high, NL-LI, Benelux only) about a person who
travels only as a subject pseudonym (normalised, blinded, evaluated by the NL node,
unblinded on Jan's machine). It fans out to the BE and LU duty desks; for DE-NW's desk it is
refused on Jan's machine and, forced, by the NL node, and DE-NW's desk inbox never holds it.
Both desks open and acknowledge it, and Jan's inbox then holds the signed "signal-ack"
notices of the BE and LU nodes. LU raises a second signal about the same person, spelled
and dated differently, for the BE and NL desks (who open and acknowledge it too); the NL
node, origin of the earlier signal, sends one "signal-match" notice to each owner. No name
or birth date is found on any node's disk or in the envelopes.

Kept apart from the alerts (``demo.scenario``) because signals need their own state (the
annexes, the pseudonyms each desk saw, the notices) and their own checks. ``SignalSteps``
works through the story it is given (``StoryCore``: sessions, directories, delivery
bookkeeping), so delivering, reading and refusing happen exactly as for the alerts.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from liaison_net.cli.signals import PRECEDENCE as SIGNAL_PRECEDENCE
from liaison_net.client.directory import Directory
from liaison_net.client.reading import believed_notice
from liaison_net.client.session import NodeSession
from liaison_net.core import pseudonym, sealing
from liaison_net.core.content import Content
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import node_of, node_principal
from liaison_net.core.limits import DAY_MS
from liaison_net.core.ownership import Handling, OwnershipTag, Tlp
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
from liaison_net.demo.network import Deadline, DemoError, DemoNetwork, Officer
from liaison_net.demo.report import Notice, Outcome, Progress, SignalRecord
from liaison_net.demo.story_types import (
    BENELUX,
    CLAUDE,
    DE_NW_DESK,
    JAN,
    POLL_S,
    Refused,
    Sent,
    make_tag,
    now_ms,
)
from liaison_net.errors import UnknownKey

SIGNAL_PURPOSE = "early detection of violent radicalisation"  # `liaison signal raise`'s default
SIGNAL_VALID_MS = 14 * DAY_MS

T = TypeVar("T")


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


@dataclass(frozen=True)
class ReadNotice:
    """A node notice in an officer's inbox, verified under the node's key and opened."""

    id: str
    sender: str  # the node principal that signed it, e.g. be/node
    fields: dict[str, Any]


def _signal_tag(owner: str) -> OwnershipTag:
    return make_tag(owner, handling=Handling.H2, tlp=Tlp.AMBER, share_with=BENELUX,
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


class StoryCore(Protocol):
    """What the signal steps use of the story (``demo.scenario.Story``): its network and
    officers' sessions, and the bookkeeping every sent envelope goes through."""

    @property
    def net(self) -> DemoNetwork: ...
    @property
    def deadline(self) -> Deadline: ...
    @property
    def progress(self) -> Progress: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def sessions(self) -> dict[str, NodeSession]: ...
    @property
    def directories(self) -> dict[str, Directory]: ...

    def officer(self, officer_id: str) -> Officer: ...

    def record_sent(self, label: str, sender: str, recipients: tuple[str, ...],
                    expected: Content | SignalPayload, envelope_id: str) -> Sent: ...

    def add_rows(self, sent: Sent, tag: OwnershipTag, precedence: Precedence,
                 kind: str) -> None: ...

    async def attempt_forbidden(self, label: str, sender: str, recipient: str,
                                tag: OwnershipTag, seal: Callable[[], Envelope]) -> Refused: ...

    async def deliver_and_read(self, batch: list[Sent]) -> None: ...


class SignalSteps:
    """Step (f) of the story and its checks, with the state only signals have."""

    def __init__(self, story: StoryCore) -> None:
        self.story = story
        self.notices: dict[str, dict[str, ReadNotice]] = {}  # officer -> notice id -> notice
        self.annexes: dict[str, SignalAnnex] = {}  # signal label -> the annex it was sent with
        self.seen: dict[tuple[str, str], tuple[Pseudonym, ...]] = {}  # (desk, id) -> annex
        self.raw_signals: list[bytes] = []  # the signals as the desks fetched them

    async def run(self) -> None:
        """(f) Early-warning signals: fan-out to the desks, refusal for DE-NW, the desks'
        acknowledgements back to the sender, and the cross-border match."""
        p, out = self.story.progress, self.story.outcome
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
            await self.story.deliver_and_read([s1])
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
            _, matched = await asyncio.gather(self.story.deliver_and_read([s2]),
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

    async def until(self, what: str, attempt: Callable[[], Awaitable[T | None]]) -> T:
        """Poll ``attempt()`` until it returns something truthy, within the demo's deadline."""
        while True:
            value = await attempt()
            if value:
                return value
            await asyncio.sleep(min(POLL_S, self.story.deadline.left(what)))

    def _seal_signal(self, spec: SignalSpec, recipients: tuple[str, ...], annex: SignalAnnex,
                     now: int) -> Envelope:
        sender = self.story.officer(spec.sender).keystore
        directory = self.story.directories[spec.sender]
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
        missing = [d for d in desks if d not in self.story.directories[spec.sender].cards]
        if missing:
            raise DemoError(f"no duty desk enrolled at {', '.join(missing)}")
        identifiers = pseudonym.normalise(spec.subject_name, spec.subject_birth_date)
        blinded, blinding = pseudonym.blind(identifiers)
        session = self.story.sessions[spec.sender]
        evaluations = await session.evaluate_pseudonym(blinded, spec.justification)
        annex = SignalAnnex(spec.payload.severity, tuple(
            Pseudonym(kid, pseudonym.finalize(blinding, point, kid))
            for kid, point in evaluations))
        envelope = self._seal_signal(spec, desks, annex, now)
        result = await session.submit(envelope.to_bytes())
        if result.status != "accepted":
            raise DemoError(f"node answered {result.status!r} for a new signal")
        self.annexes[spec.label] = annex
        sent = self.story.record_sent(spec.label, spec.sender, desks, spec.payload, result.id)
        self.story.add_rows(sent, spec.tag, SIGNAL_PRECEDENCE[spec.payload.severity], "signal")
        self.story.outcome.signals.append(SignalRecord(
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

        refused = await self.story.attempt_forbidden(spec.label, spec.sender, DE_NW_DESK,
                                                     spec.tag, seal)
        self.raw_signals.extend(forced)  # it left Jan's machine too: no name in it either
        node = node_of(spec.sender).upper()
        self.story.outcome.signal_check(
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
        session = self.story.sessions[officer]
        keystore = self.story.officer(officer).keystore
        for entry in await session.inbox_all():
            if entry.kind != Kind.NOTICE.value or entry.id in seen:
                continue
            raw = await session.fetch(entry.id)
            try:
                envelope = sealing.verify(raw, self.story.directories[officer].lookup(), now=None)
            except UnknownKey:
                # Signed by a node key this officer's directory did not have yet.
                self.story.directories[officer] = await session.directory(now=datetime.now(UTC))
                envelope = sealing.verify(raw, self.story.directories[officer].lookup(), now=None)
            fields = believed_notice(envelope, sealing.open_envelope(
                envelope, officer, keystore.encryption_keys), reader_node=node_of(officer))
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

        acks = await self.until(f"waiting for the desks' acknowledgements of {sent.label} "
                                 f"at {sent.sender}", arrived)
        for n in acks:
            node = str(n.fields.get("node"))
            self.story.outcome.notices.append(Notice(
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
        found = await asyncio.gather(*(self.until(
            f"waiting for the match notice at {owner}", functools.partial(arrived, owner))
            for owner in owners))
        for owner, notices in zip(owners, found, strict=True):
            for n in notices:
                self.story.outcome.notices.append(Notice(
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
        return [e.id for e in await self.story.sessions[desk].inbox_all()
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
            for path in sorted(Path(self.story.net.root / sub).rglob("*")):
                if path.is_file():
                    sources.append((str(path), path.read_bytes()))
        sources += [(f"signal envelope {i + 1}", raw) for i, raw in enumerate(self.raw_signals)]
        found = [f"{needle.decode(errors='replace')!r} in {where}"
                 for where, data in sources for needle in sorted(needles)
                 if needle in data.lower()]
        return found, len(sources)

    def opened(self, recipient: str, sent: Sent, envelope: Envelope, raw: bytes,
               plaintext: bytes) -> tuple[bool, str]:
        """What `liaison read` shows a desk: the payload, and only a pseudonym in the annex.
        Records what the desk saw; says whether the payload is the one sealed, and what."""
        payload = SignalPayload.decode(plaintext)
        annex = envelope.header.signal
        self.seen[(recipient, sent.id)] = annex.pseudonyms if annex is not None else ()
        self.raw_signals.append(raw)
        return (payload == sent.expected,
                f"{payload.category.value} ({payload.severity.label}, {payload.region})")

    # --- what the signal steps expect ---------------------------------------------------

    def check(self) -> None:
        out = self.story.outcome
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
