"""The end-of-run accounting, from the nodes' own SQLite files and nothing else.

What each sender was told is in the ledger (one ``Sent`` per envelope); what happened is
in the databases. The rules (DESIGN.md, properties 2, 3 and 5):

* an envelope answered "accepted" (or "duplicate": the origin already held it) is in the
  origin's envelopes table and in each recipient's inbox exactly once, on the recipient's
  home node; a missing copy is *lost*, an extra one (on any node) *duplicated*;
* a submission that got no answer (the origin was killed, or never came back within the
  sender's patience) is ambiguous: if the origin durably holds it, it is owed exactly like
  an accepted one; if not, it must be in no inbox at all;
* a refused envelope is in no inbox and in no node's envelopes table ("changes nothing");
* the sender was refused exactly when the workload built a refusal on purpose;
* every node's audit chain verifies (the code path of `liaison admin audit verify`);
* every effect an owed envelope causes (evidence, notices, due times, receipts) is where
  it belongs exactly once (``effects``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from liaison_net.chaos.effects import EffectCount, Owed, count, exists, read_effects
from liaison_net.core import crypto
from liaison_net.core.ids import id_to_text, node_of
from liaison_net.store import observe
from liaison_net.store.node_store import NodeStore

#: How many examples of each kind of failure the report names.
EXAMPLES = 10


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # the origin answered accepted or duplicate
    REFUSED = "refused"  # the origin answered a 4xx with a code
    UNANSWERED = "unanswered"  # no answer within the sender's patience


@dataclass
class Sent:
    """One envelope as its sender saw it."""

    id: bytes
    sender: str
    recipients: tuple[str, ...]
    precedence: str
    expect_refusal: str | None  # the policy code the origin must answer, or None
    outcome: Outcome = Outcome.UNANSWERED
    code: str | None = None  # the refusal code, or the last transient error's
    attempts: int = 0
    destination_down: bool = False  # a recipient's node was down when it was accepted
    link_cut: bool = False  # the origin's link to a recipient's node was cut then
    origin_was_down: bool = False  # some attempt met the origin down
    server_errors: int = 0  # answers 5xx other than "unavailable" (a node must never)
    request: bool = False  # kind request: owes due times
    forward_of: bytes | None = None  # a consented forward of this original ...
    consent_owner: str | None = None  # ... with the consent of this owner: owes a receipt

    @property
    def origin(self) -> str:
        return node_of(self.sender)

    def to_json(self) -> dict[str, Any]:
        return {"id": id_to_text(self.id), "sender": self.sender,
                "recipients": list(self.recipients), "precedence": self.precedence,
                "expect_refusal": self.expect_refusal, "outcome": self.outcome.value,
                "code": self.code, "attempts": self.attempts,
                "destination_down": self.destination_down, "link_cut": self.link_cut,
                "origin_was_down": self.origin_was_down, "server_errors": self.server_errors,
                "request": self.request, "consent_owner": self.consent_owner,
                "forward_of": id_to_text(self.forward_of) if self.forward_of else None}

    def owed(self) -> Owed:
        return Owed(self.id, self.sender, self.recipients, self.request, self.consent_owner)


@dataclass(frozen=True)
class Chain:
    entries: int
    broken_at: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.error is None


@dataclass
class Accounting:
    submitted: int = 0
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    unanswered_held: int = 0  # unanswered, but durably held by the origin: owed
    expected_copies: int = 0
    delivered_copies: int = 0
    lost: list[tuple[str, str]] = field(default_factory=list)  # (envelope, officer)
    duplicated: list[tuple[str, str, int]] = field(default_factory=list)  # + extra copies
    misdelivered: list[tuple[str, str]] = field(default_factory=list)  # not a recipient
    phantom: list[str] = field(default_factory=list)  # unanswered, not held, yet in an inbox
    not_durable: list[str] = field(default_factory=list)  # accepted, not in the origin's table
    refused_stored: list[str] = field(default_factory=list)  # refused, yet in a table/inbox
    policy_violations: list[str] = field(default_factory=list)  # must refuse, was accepted
    unexpected_refusals: list[tuple[str, str]] = field(default_factory=list)  # (id, code)
    server_errors: int = 0  # 5xx answers to submissions (the node must never give one)
    outbox: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> state -> n
    chains: dict[str, Chain] = field(default_factory=dict)
    owed: list[Owed] = field(default_factory=list)  # accepted, or unanswered but held
    effects: EffectCount = field(default_factory=EffectCount)

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    @property
    def duplicated_count(self) -> int:
        return sum(extra for _, _, extra in self.duplicated)

    def failures(self) -> list[str]:
        """One line per broken rule; empty when the run is clean."""
        out = []
        checks: list[tuple[Sequence[Any], str]] = [
            (self.lost, "lost (accepted, never in the recipient's inbox)"),
            (self.duplicated, "duplicated (more than one copy in an inbox)"),
            (self.misdelivered, "in the inbox of someone not addressed"),
            (self.phantom, "unanswered and not held by the origin, yet delivered"),
            (self.not_durable, "answered accepted but not in the origin's database"),
            (self.refused_stored, "refused but stored by a node or in an inbox"),
            (self.policy_violations, "accepted although the tag forbids it"),
            (self.unexpected_refusals, "refused although the tag allows it, or for "
                                       "another reason than the one built in"),
        ]
        for items, what in checks:
            if items:
                out.append(f"{len(items)} {what}, e.g. {items[0]}")
        out += self.effects.failures()
        if self.server_errors:
            out.append(f"{self.server_errors} submissions answered with a 5xx error")
        for node, chain in sorted(self.chains.items()):
            if not chain.ok:
                out.append(f"audit chain of {node} does not verify: "
                           f"{chain.error or f'broken at entry {chain.broken_at}'}")
        return out

    def figures(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted, "accepted": self.accepted, "refused": self.refused,
            "unanswered": self.unanswered, "unanswered_held": self.unanswered_held,
            "expected_copies": self.expected_copies, "delivered_copies": self.delivered_copies,
            "lost": self.lost_count, "duplicated": self.duplicated_count,
            "misdelivered": len(self.misdelivered), "phantom": len(self.phantom),
            "not_durable": len(self.not_durable), "refused_stored": len(self.refused_stored),
            "policy_violations": len(self.policy_violations),
            "unexpected_refusals": len(self.unexpected_refusals),
            "server_errors": self.server_errors,
            **self.effects.figures(),
        }

    def examples(self) -> dict[str, list[Any]]:
        kinds: dict[str, Sequence[Any]] = {
            "lost": self.lost, "duplicated": self.duplicated, "misdelivered": self.misdelivered,
            "phantom": self.phantom, "not_durable": self.not_durable,
            "refused_stored": self.refused_stored, "policy_violations": self.policy_violations,
            "unexpected_refusals": self.unexpected_refusals}
        return {k: [list(x) if isinstance(x, tuple) else x for x in v[:EXAMPLES]]
                for k, v in kinds.items() if v} | self.effects.examples()


# --- reading the databases -----------------------------------------------------------------


@dataclass
class NodeFacts:
    """What one node's database holds about the ledger's envelopes."""

    inbox: Counter[tuple[str, bytes]]  # (officer, envelope id) -> rows
    held: set[bytes]  # envelope ids in its envelopes table
    outbox: dict[str, int]  # hop state -> count (every envelope, evidence too)


def read_node(database: observe.Where, ids: set[bytes]) -> NodeFacts:
    """Read-only: the inbox rows and stored envelopes among ``ids``, and the outbox."""
    if not exists(database):
        return NodeFacts(Counter(), set(), {})
    return NodeFacts(*observe.node_facts(database, ids))


def pending_hops(outbox: Mapping[str, int]) -> int:
    """Hops not yet final (queued, or in flight when the node last wrote)."""
    return sum(n for state, n in outbox.items()
               if state not in ("delivered", "refused", "expired"))


def account(ledger: Iterable[Sent], databases: Mapping[str, observe.Where],
            keys: Mapping[str, Sequence[crypto.EncryptionKeyPair]]) -> Accounting:
    """Compare what every sender was told with what every node's database holds: the
    envelopes, then their effects (``keys`` opens what was sealed for each officer)."""
    sent = list(ledger)
    ids = {s.id for s in sent}
    facts = {node: read_node(path, ids) for node, path in databases.items()}
    acc = account_facts(sent, facts)
    acc.effects = count_effects(acc.owed, databases, keys)
    return acc


def count_effects(owed: Sequence[Owed], databases: Mapping[str, observe.Where],
                  keys: Mapping[str, Sequence[crypto.EncryptionKeyPair]]) -> EffectCount:
    return count(owed, read_effects(databases, owed), keys)


def account_facts(sent: Sequence[Sent], facts: Mapping[str, NodeFacts]) -> Accounting:
    acc = Accounting(submitted=len(sent))
    acc.outbox = {node: f.outbox for node, f in facts.items()}
    copies: Counter[tuple[str, bytes]] = Counter()
    by_envelope: dict[bytes, set[str]] = {}
    for f in facts.values():
        copies.update(f.inbox)
        for officer, envelope_id in f.inbox:
            by_envelope.setdefault(envelope_id, set()).add(officer)
    held_anywhere = set().union(*(f.held for f in facts.values())) if facts else set()
    for s in sent:
        acc.server_errors += s.server_errors
        text = id_to_text(s.id)
        origin = facts.get(s.origin)
        held_by_origin = origin is not None and s.id in origin.held
        if s.outcome is Outcome.REFUSED:
            acc.refused += 1
            if s.code != s.expect_refusal:  # refused, but not (or not for) what we built
                acc.unexpected_refusals.append((text, s.code or "?"))
            if s.id in by_envelope or s.id in held_anywhere:
                acc.refused_stored.append(text)
            continue
        if s.outcome is Outcome.ACCEPTED:
            acc.accepted += 1
            if s.expect_refusal is not None:
                acc.policy_violations.append(text)
            if not held_by_origin:
                acc.not_durable.append(text)
            owed = True
        else:
            acc.unanswered += 1
            owed = held_by_origin
            acc.unanswered_held += owed
        if not owed:
            if s.id in by_envelope:
                acc.phantom.append(text)
            continue
        acc.owed.append(s.owed())
        for officer in s.recipients:
            acc.expected_copies += 1
            home = facts.get(node_of(officer))
            if home is not None and home.inbox[(officer, s.id)] >= 1:
                acc.delivered_copies += 1
            else:
                acc.lost.append((text, officer))
            total = copies[(officer, s.id)]
            if total > 1:
                acc.duplicated.append((text, officer, total - 1))
        for officer in sorted(by_envelope.get(s.id, set()) - set(s.recipients)):
            acc.misdelivered.append((text, officer))
    return acc


# --- the audit chains ----------------------------------------------------------------------


async def verify_chain(database: observe.Where, node_id: str) -> Chain:
    """`liaison admin audit verify`'s own code path: every hash and link recomputed."""
    if not exists(database):
        return Chain(0, None, f"no database at {database}")
    if isinstance(database, observe.PgDatabase):
        from liaison_net.store.postgres import PostgresBackend

        store = NodeStore(None, node_id, backend=PostgresBackend(
            database.dsn, password_file=database.password_file))
    else:
        store = NodeStore(database, node_id)
    try:
        await store.open()
        try:
            entries, broken = await store.verify_audit()
        finally:
            await store.close()
    except Exception as exc:  # a chain that cannot even be read does not verify
        return Chain(0, None, f"{type(exc).__name__}: {exc}"[:300])
    return Chain(entries, broken)


async def verify_chains(databases: Mapping[str, observe.Where]) -> dict[str, Chain]:
    return {node: await verify_chain(path, node) for node, path in databases.items()}
