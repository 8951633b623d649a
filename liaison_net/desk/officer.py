"""What the desk does for its officer, with the same client library as the CLI.

One ``DeskOfficer`` per desk process: the unlocked keystore, one ``NodeSession`` to the
home node (its token and the verified directory cached beside the keystore, as for the
CLI) and the clock. Every envelope shown is verified under the CA-vouched directory,
checked against its tag as the receiving client (``reading.check_received``) and only then
opened; every envelope sent is checked against policy (``client.tagging.check_send``, the
rule every node applies) before it is sealed. Answers are plain JSON-able dicts; the
``api`` module turns them into HTTP. Each list is bounded, each cache too.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liaison_net.client import addressing, evidence_trail, reading, tagging
from liaison_net.client.directory import Directory
from liaison_net.client.keystore import Keystore
from liaison_net.client.local_cache import LocalCache, verified_directory
from liaison_net.client.session import InboxEntry, NodeSession
from liaison_net.clock import Clock
from liaison_net.core import content as content_mod
from liaison_net.core import sealing
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.evidence import Step
from liaison_net.core.ids import id_from_text, id_to_text, node_of
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import OwnershipTag
from liaison_net.errors import (
    BadTimestamp,
    Forbidden,
    LiaisonError,
    NotFound,
    Revoked,
    UnknownKey,
)

MAX_INBOX_SHOWN = 500  # entries listed on the inbox screen
MAX_OPENED_FOR_LIST = 200  # envelopes opened (verified, checked, decrypted) per listing
MAX_REMEMBERED = 2000  # envelopes whose checked summary is kept in memory
MAX_SENT_SHOWN = 200  # envelopes sent from this desk, listed for their timelines
MAX_SEARCH_RESULTS = 100


@dataclass(frozen=True)
class Summary:
    """An envelope as the inbox lists it, once verified and checked (or why it is not)."""

    subject: str | None
    tag: dict[str, Any] | None
    problem: str | None


@dataclass(frozen=True)
class Compose:
    """A compose form, already parsed and bounded by ``api``."""

    to: tuple[str, ...]
    subject: str
    text: str
    handling: str
    conditions: str
    tlp: str
    community: str
    share_with: frozenset[str] | None
    purpose: str
    retain_days: int
    source: str
    accuracy: int
    permit: tuple[str, ...]
    precedence: str
    expires_hours: int
    unit: str


class DeskOfficer:
    """``async with DeskOfficer(ks, path, clock) as officer: await officer.inbox()``."""

    def __init__(self, keystore: Keystore, keystore_path: Path, clock: Clock, *,
                 cache: LocalCache | None = None) -> None:
        self.ks = keystore
        self.keystore_path = keystore_path
        self.clock = clock
        self.cache = cache or LocalCache(keystore_path, now_ms=clock.now_ms,
                                         warn=self._warn)
        self.node = NodeSession(keystore, cache=self.cache)
        self.warnings: collections.deque[str] = collections.deque(maxlen=50)
        self._summaries: collections.OrderedDict[str, Summary] = collections.OrderedDict()
        # What this officer sent from the desk, kept sealed beside the keystore so the
        # timelines survive a restart (client.local_cache, "sent").
        self.sent: collections.deque[dict[str, Any]] = collections.deque(
            self.cache.load_sent(keystore), maxlen=MAX_SENT_SHOWN)
        self._lock = asyncio.Lock()  # one directory refresh at a time

    def _warn(self, text: str) -> None:
        self.warnings.append(text)

    async def __aenter__(self) -> DeskOfficer:
        await self.node.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.node.__aexit__(None, None, None)

    def remember_sent(self, record: dict[str, Any]) -> None:
        self.sent.appendleft(record)
        self.cache.save_sent(self.ks, list(self.sent))

    def now(self) -> int:
        return self.clock.now_ms()

    async def directory(self, *, wanted: list[str] | None = None,
                        refresh: bool = False) -> tuple[Directory, bool]:
        async with self._lock:
            directory, cached = await verified_directory(
                self.node, self.cache, self.ks, now=self.clock.host_now(),
                wanted=wanted or [self.ks.officer], refresh=refresh)
        for warning in directory.warnings[:10]:
            self._warn(warning)
        return directory, cached

    def whoami(self) -> dict[str, Any]:
        return {"officer": self.ks.officer, "node": self.ks.node}

    # --- reading ----------------------------------------------------------------------

    def _open(self, raw: bytes, wanted: str, directory: Directory
              ) -> tuple[Envelope, bytes]:
        """Verify, check as the receiving client, decrypt: the CLI's `read`, step by step."""
        envelope = sealing.verify(raw, directory.lookup(), now=None)
        if envelope.id != id_from_text(wanted):
            raise Forbidden("the node answered with a different envelope than the one asked for")
        reading.check_received(envelope, directory, own_node=self.ks.node, now=self.now())
        return envelope, sealing.open_envelope(envelope, self.ks.officer,
                                               self.ks.encryption_keys)

    async def opened(self, envelope_id: str, *, reason: str | None = None
                     ) -> tuple[Envelope, bytes, Directory]:
        """Envelope ID, verified and checked here, and its plaintext; with the directory
        that decided (the cached one, or the node's when the cache did not know a key).
        The node audits the read, with ``reason`` if given."""
        raw = await self.node.fetch(envelope_id, reason=reason)
        directory, cached = await self.directory()
        try:
            envelope, plaintext = self._open(raw, envelope_id, directory)
        except LiaisonError:
            if not cached:
                raise
            # A signer or revocation newer than the cache: decide again with the node's.
            directory, _ = await self.directory(refresh=True)
            envelope, plaintext = self._open(raw, envelope_id, directory)
        return envelope, plaintext, directory

    def readable(self, envelope: Envelope, plaintext: bytes) -> content_mod.Content:
        return reading.readable(envelope, plaintext, reader_node=self.ks.node)

    async def summary(self, entry: InboxEntry) -> Summary:
        known = self._summaries.get(entry.id)
        if known is not None:
            return known
        try:
            envelope, plaintext, _ = await self.opened(entry.id)
            content = self.readable(envelope, plaintext)
            summary = Summary(content.subject, tagging.tag_badges(envelope.header.tag), None)
        except LiaisonError as exc:
            summary = Summary(None, None, f"{exc.code}: {exc.detail}")
        self._summaries[entry.id] = summary
        while len(self._summaries) > MAX_REMEMBERED:
            self._summaries.popitem(last=False)
        return summary

    async def inbox(self, *, show_all: bool = False) -> dict[str, Any]:
        """Unacknowledged envelopes (or all), most urgent first, then newest first."""
        entries = [e for e in await self.node.inbox_all(max_items=10 * MAX_INBOX_SHOWN)
                   if show_all or (e.acked is None and e.kind not in (Kind.EVIDENCE.value,))]
        entries.sort(key=lambda e: (-_precedence_rank(e.precedence), -e.created, -e.seq))
        entries = entries[:MAX_INBOX_SHOWN]
        items = []
        for index, entry in enumerate(entries):
            summary = (await self.summary(entry) if index < MAX_OPENED_FOR_LIST
                       and entry.purged is None else Summary(None, entry.tag, None))
            items.append({
                "id": entry.id, "seq": entry.seq, "sender": entry.sender, "kind": entry.kind,
                "precedence": entry.precedence, "created": entry.created,
                "received": entry.relayed, "acked": entry.acked, "purged": entry.purged,
                "subject": summary.subject, "tag": summary.tag, "problem": summary.problem})
        # "delivered", back to each sender, as `liaison inbox` does
        warnings = await evidence_trail.attest_listed(
            self.ks, self.keystore_path, entries, now=self.now(), node=self.node,
            cache=self.cache)
        for warning in warnings[:10]:
            self._warn(warning)
        return {"items": items, "now": self.now()}

    async def read(self, envelope_id: str, *, reason: str | None = None) -> dict[str, Any]:
        envelope, plaintext, directory = await self.opened(envelope_id, reason=reason)
        content = self.readable(envelope, plaintext)
        h = envelope.header
        card = directory.cards.get(h.sender)
        report = {
            "id": h.id_text, "kind": h.kind.value, "precedence": h.precedence.label,
            "sender": {"officer": h.sender, "name": card.name if card else None,
                       "role": card.role if card else None},
            "recipients": [r.officer for r in h.recipients], "created": h.created,
            "expires": h.expires, "due": h.due,
            "ref": id_to_text(h.ref) if h.ref is not None else None,
            "tag": tagging.tag_badges(h.tag),
            "allows": tagging.allowed_actions(h.tag, own_node=self.ks.node, now=self.now()),
            "content": {"subject": content.subject, "text": content.text,
                        "attachments": [{"name": a.name, "media_type": a.media_type,
                                         "bytes": len(a.data)} for a in content.attachments]},
        }
        # "opened", to the sender, as `liaison read` does
        for warning in (await evidence_trail.attest_opened(
                self.ks, self.keystore_path, envelope, directory, now=self.now(),
                node=self.node, cache=self.cache))[:10]:
            self._warn(warning)
        return report

    async def ack(self, envelope_id: str) -> dict[str, Any]:
        done = await self.node.ack(envelope_id)
        return {"id": envelope_id, "acked": done}

    # --- sending ----------------------------------------------------------------------

    def _tag(self, form: Compose, to: list[str], now: int) -> OwnershipTag:
        own = self.ks.node
        nodes = form.share_with or frozenset({own, *(node_of(r) for r in to)})
        return tagging.build_tag(
            own=own, unit=form.unit, handling=form.handling, tlp=form.tlp, source=form.source,
            accuracy=form.accuracy, share_with=nodes | {own}, permit=form.permit,
            purpose=form.purpose, retain_until=now + form.retain_days * DAY_MS,
            conditions=form.conditions, community=form.community)

    def check(self, form: Compose) -> dict[str, Any]:
        """What the compose screen says before sending: the tag on its own and the policy
        for each named recipient (coverage addresses are checked once resolved, on send)."""
        now = self.now()
        named = [a for a in addressing.parse_addresses(form.to) if isinstance(a, str)]
        tag = self._tag(form, named, now)
        tagging.check_send(tag, named, own=self.ks.node, now=now)
        return {"ok": True, "share_with": sorted(tag.share_with),
                "tag": tagging.tag_badges(tag)}

    async def send(self, form: Compose) -> dict[str, Any]:
        """The CLI's `send`: check, resolve, seal for each recipient, hand to the node."""
        now = self.now()
        addresses = addressing.parse_addresses(form.to)
        named = [a for a in addresses if isinstance(a, str)]
        tagging.check_send(self._tag(form, named, now), named, own=self.ks.node, now=now)
        plaintext = content_mod.encode(content_mod.Content(subject=form.subject,
                                                           text=form.text))

        def sealed(directory: Directory) -> tuple[bytes, addressing.Resolution]:
            own_card = directory.cards.get(self.ks.officer)
            if own_card is None or own_card.signing_public != self.ks.signing.public:
                raise UnknownKey(f"the directory has no card for {self.ks.officer} with this "
                                 "keystore's signing key: has your administrator enrolled you?")
            resolved = addressing.resolve(addresses, directory, sender=self.ks.officer,
                                          now=now)
            tag = self._tag(form, resolved.officers, now)
            tagging.check_send(tag, resolved.officers, own=self.ks.node, now=now)
            keys = [directory.recipient(r, now=now) for r in resolved.officers]
            envelope = sealing.seal(
                sender=self.ks.officer, sender_key=self.ks.signing, recipients=keys, tag=tag,
                plaintext=plaintext, now=now, expires=now + form.expires_hours * HOUR_MS,
                precedence=Precedence.from_label(form.precedence))
            return envelope.to_bytes(), resolved

        directory, cached = await self.directory(wanted=[self.ks.officer, *named])
        try:
            raw, resolved = sealed(directory)
            result = await self.node.submit(raw)
        except (NotFound, Revoked, UnknownKey, BadTimestamp):
            if not cached:
                raise
            directory, _ = await self.directory(refresh=True)
            raw, resolved = sealed(directory)
            result = await self.node.submit(raw)
        record = {"id": result.id, "status": result.status, "to": resolved.officers,
                  "subject": form.subject, "sent": now, "kind": Kind.MESSAGE.value}
        self.remember_sent(record)
        return record

    # --- following ----------------------------------------------------------------------

    async def timeline(self, envelope_id: str) -> dict[str, Any]:
        """Where envelope ID is, per recipient, each step from a signed statement verified
        here (``evidence_trail.status_report``, as `liaison status`)."""
        report = await evidence_trail.status_report(self.node, self.ks, envelope_id,
                                                    now=self.now())
        verified = sum(1 for c in report.evidence if c.attested is not None)
        return {
            "id": report.status.id, "sender": report.sender,
            "recipients": [{"officer": p.officer, "state": p.state,
                            "steps": [{"step": s.value, "at": p.at(s)} for s in Step],
                            "refused": p.refused, "expired": p.expired}
                           for p in report.progress],
            "hops": {peer: {"state": hop.state, "reason": hop.reason}
                     for peer, hop in sorted(report.status.hops.items())},
            "evidence": {"verified": verified, "refused": len(report.evidence) - verified},
            "warnings": report.warnings[:20],
            # four-eyes (issue 19): held, approved by, rejected by, expired
            "four_eyes": (report.status.hold.describe()
                          if report.status.hold is not None else None),
        }

    # --- the directory --------------------------------------------------------------------

    async def search(self, query: str) -> dict[str, Any]:
        """Officers whose id, name, role, posting, languages or coverage contain ``query``."""
        directory, _ = await self.directory()
        needle = query.strip().lower()
        now = self.now()
        found = []
        for officer, card in sorted(directory.cards.items()):
            almanac = card.almanac.to_json()
            haystack = " ".join([officer, card.name, card.role, almanac["posting"],
                                 *almanac["languages"], *almanac["coverage"]]).lower()
            if needle and needle not in haystack:
                continue
            revoked = directory.revocation_of(officer, now=now) is not None
            found.append({"officer": officer, "name": card.name, "role": card.role,
                          "node": card.node, **almanac, "revoked": revoked,
                          "valid_until": card.valid_until})
            if len(found) >= MAX_SEARCH_RESULTS:
                break
        return {"query": query, "officers": found}


def _precedence_rank(label: str) -> int:
    try:
        return int(Precedence.from_label(label))
    except LiaisonError:
        return -1

