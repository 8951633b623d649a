"""The effects the soak counts: what a node owes because of an envelope it decided on.

DESIGN.md, property 7: what a node owes because of an envelope (evidence, notices, due
times, receipts) is committed with the decision that causes it, so a SIGKILL between the
two must not lose it, nor a retry make it twice. For every envelope a node took (answered
accepted, or unanswered but durably held by the origin; ``check.owed``)::

    effect        owed                                   found, and only there
    accepted      once per envelope                      evidence, step accepted, by
                                                         <origin>/node, in the sender's inbox
    relayed       once per recipient, unless its hop     evidence, step relayed, by
                  ended refused or expired               <recipient's node>/node, sender's inbox
    non-delivery  once per hop that ended refused or     notice non-delivery naming the
                  expired at the origin                  envelope and the node, sender's inbox
    due           a request: once for the requester,     a row of the requests table on the
                  once per addressee it reached          officer's home node
    disclosure    a consented forward: once per node     notice disclosure naming the forward
                  of its recipients                      and the node, in the owner's inbox

"In the sender's inbox" means an inbox row on the sender's home node of an envelope of
kind ``evidence`` or ``notice`` that verifies under the issuing node's signing key (as its
peers hold it) and opens with the sender's own key; an evidence statement must verify
too and name the maker ``core.evidence.maker`` says. An effect is *missing* when none is
found, *twice* when more than one is; one found that nothing owes (evidence about a
refused envelope, a notice for a hop that was delivered) is *unowed*. A lost copy also
misses its ``relayed`` evidence: both are counted, each in its own row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from liaison_net.core import codec, crypto, sealing
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.evidence import Step, maker, verify_statement
from liaison_net.core.evidence_batch import is_batch, verify_batch
from liaison_net.core.ids import id_to_text, node_of, node_principal
from liaison_net.errors import LiaisonError
from liaison_net.store import observe

#: The kinds of effect, in the order the report shows them.
KINDS = ("accepted", "relayed", "non-delivery", "due", "disclosure")
#: How many examples of each kind of failure the report names.
EXAMPLES = 10

#: (kind, envelope id, party): party is the origin node (accepted), the recipient (relayed),
#: the node not reached (non-delivery), the officer with the due time (due), or the node
#: of the forward's recipients (disclosure).
Key = tuple[str, bytes, str]


@dataclass(frozen=True)
class Owed:
    """One envelope a node took, as the effects accounting needs it."""

    id: bytes
    sender: str
    recipients: tuple[str, ...]
    request: bool = False
    consent_owner: str | None = None  # a consented forward: the owner who granted it


@dataclass
class NodeEffects:
    """What one node's database holds of the effects (``observe.effect_facts``)."""

    inbox: list[tuple[str, bytes]] = field(default_factory=list)  # (officer, raw envelope)
    requests: list[tuple[bytes, str, str]] = field(default_factory=list)  # (id, officer, role)
    failed_hops: list[tuple[str, bytes, str]] = field(default_factory=list)  # (peer, id, state)
    node_keys: dict[str, bytes] = field(default_factory=dict)  # node -> signing public


@dataclass
class EffectCount:
    owed: Counter[str] = field(default_factory=Counter)  # kind -> effects owed
    found: Counter[str] = field(default_factory=Counter)  # kind -> owed effects found
    missing: list[Key] = field(default_factory=list)
    twice: list[tuple[Key, int]] = field(default_factory=list)  # + copies found
    unowed: list[Key] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # did not verify or open: why

    @property
    def signature(self) -> tuple[int, int, int, int]:
        """What the settle phase watches: it stops waiting when this stops changing."""
        return (sum(self.found.values()), len(self.missing), len(self.twice),
                len(self.unowed))

    def failures(self) -> list[str]:
        out = []
        for items, what in ((self.missing, "effects missing (owed, never found)"),
                            (self.twice, "effects found more than once"),
                            (self.unowed, "effects found that nothing owes"),
                            (self.unreadable, "evidence or notices that do not verify")):
            if items:
                out.append(f"{len(items)} {what}, e.g. {_show(items[0])}")
        return out

    def figures(self) -> dict[str, Any]:
        return {
            "effects_owed": sum(self.owed.values()),
            "effects_found": sum(self.found.values()),
            "effects_missing": len(self.missing),
            "effects_twice": sum(extra for _, extra in self.twice),
            "effects_unowed": len(self.unowed),
            "effects_unreadable": len(self.unreadable),
            "effects_by_kind": {k: {"owed": self.owed[k], "found": self.found[k],
                                    "missing": sum(m[0] == k for m in self.missing),
                                    "twice": sum(t[0][0] == k for t in self.twice)}
                                for k in KINDS},
        }

    def examples(self) -> dict[str, list[Any]]:
        kinds: dict[str, Sequence[Any]] = {
            "effects_missing": self.missing, "effects_twice": self.twice,
            "effects_unowed": self.unowed, "effects_unreadable": self.unreadable}
        return {k: [_show(x) for x in v[:EXAMPLES]] for k, v in kinds.items() if v}


def _show(item: Any) -> Any:
    """An example as JSON shows it: ids as text."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple):
        return [*_show(item[0]), item[1]]
    if isinstance(item, tuple):
        kind, envelope_id, party = item
        return [kind, id_to_text(envelope_id), party]
    return item


# --- reading -------------------------------------------------------------------------------


def read_effects(databases: Mapping[str, observe.Where],
                 owed: Sequence[Owed]) -> dict[str, NodeEffects]:
    """Read-only, every node: the effects about ``owed`` (empty for a missing file)."""
    officers = {o.sender for o in owed} | {o.consent_owner for o in owed if o.consent_owner}
    ids = {o.id for o in owed}
    out = {}
    for node, path in databases.items():
        out[node] = (NodeEffects(*observe.effect_facts(path, officers, ids))
                     if exists(path) else NodeEffects())
    return out


# --- counting ------------------------------------------------------------------------------


def expected(owed: Iterable[Owed], failed: Mapping[bytes, set[str]]) -> Counter[Key]:
    """Every effect owed, once each; ``failed`` = envelope -> nodes its hop never reached."""
    out: Counter[Key] = Counter()
    for o in owed:
        origin = node_of(o.sender)
        out[("accepted", o.id, origin)] += 1
        unreached = failed.get(o.id, set())
        for node in sorted(unreached):
            out[("non-delivery", o.id, node)] += 1
        reached = [r for r in o.recipients if node_of(r) not in unreached]
        for recipient in reached:
            out[("relayed", o.id, recipient)] += 1
        if o.request:
            out[("due", o.id, o.sender)] += 1
            for recipient in reached:
                out[("due", o.id, recipient)] += 1
        if o.consent_owner is not None:
            for node in sorted({node_of(r) for r in reached}):
                out[("disclosure", o.id, node)] += 1
    return out


def count(owed: Sequence[Owed], facts: Mapping[str, NodeEffects],
          keys: Mapping[str, Sequence[crypto.EncryptionKeyPair]]) -> EffectCount:
    """Compare the effects owed for ``owed`` with those found in every node's database;
    ``keys`` opens what was sealed for each sender (and each consenting owner)."""
    failed: dict[bytes, set[str]] = {}
    for f in facts.values():
        for peer, envelope_id, _ in f.failed_hops:
            failed.setdefault(envelope_id, set()).add(peer)
    want = expected(owed, failed)
    lookup = _node_lookup(facts.values())
    by_id = {o.id: o for o in owed}
    found: Counter[Key] = Counter()
    result = EffectCount()
    for node, f in facts.items():
        for officer, raw in f.inbox:
            if node_of(officer) != node:
                continue  # an inbox row of someone homed elsewhere is not "at the sender"
            try:
                found_keys = _effects_of(raw, officer, keys.get(officer, ()), lookup, by_id)
            except (LiaisonError, ValueError) as exc:
                result.unreadable.append(f"{officer} at {node}: {type(exc).__name__}: "
                                         f"{str(exc)[:200]}")
                continue
            for key in found_keys:
                found[key] += 1
        for envelope_id, officer, role in f.requests:
            o = by_id.get(envelope_id)
            if o is None:
                continue
            at_home = node_of(officer) == node
            right = role == "outgoing" if officer == o.sender else role == "incoming"
            party = officer if at_home and right else f"{officer} ({role} at {node})"
            found[("due", envelope_id, party)] += 1
    for key, n in want.items():
        result.owed[key[0]] += n
        copies = found.get(key, 0)
        if copies == 0:
            result.missing.append(key)
        else:
            result.found[key[0]] += 1
            if copies > 1:
                result.twice.append((key, copies - 1))
    result.unowed = sorted(k for k in found if k not in want)
    return result


def _node_lookup(facts: Iterable[NodeEffects]) -> sealing.KeyLookup:
    """Node signing keys as the nodes hold each other's: key id -> ``<node>/node``."""
    signers: dict[bytes, sealing.SignerKey] = {}
    for f in facts:
        for node, public in f.node_keys.items():
            signers[crypto.signing_key_id(public)] = sealing.SignerKey(node_principal(node),
                                                                       public)
    return signers.get


def _effects_of(raw: bytes, officer: str, keys: Sequence[crypto.EncryptionKeyPair],
                lookup: sealing.KeyLookup, by_id: Mapping[bytes, Owed]) -> list[Key]:
    """The effects an evidence or notice envelope in ``officer``'s inbox carries, verified
    and opened: one, or one per envelope a batch statement covers (``evidence_batch``);
    none when it is about nothing the soak sent (or a notice it does not count)."""
    envelope = sealing.verify(raw, lookup, now=None)
    h = envelope.header
    if h.ref is None or not keys:
        return []
    ours = h.ref in by_id
    if h.kind is Kind.EVIDENCE:
        # A batch's header names one envelope of it, maybe not one the soak sent: open
        # every evidence envelope; one about nothing of ours that does not open is ignored.
        try:
            plaintext = sealing.open_envelope(envelope, officer, keys)
        except LiaisonError:
            if ours:
                raise
            return []
        if is_batch(plaintext):
            return _batch_effects(plaintext, h.sender, lookup, by_id)
    elif ours:
        plaintext = sealing.open_envelope(envelope, officer, keys)
    if not ours:
        return []
    key = _effect_of(envelope, plaintext, lookup, by_id)
    return [] if key is None else [key]


def _batch_effects(content: bytes, signer: str, lookup: sealing.KeyLookup,
                   by_id: Mapping[bytes, Owed]) -> list[Key]:
    """One ``accepted`` or ``relayed`` per covered envelope the soak sent, after one check
    of the signature and the Merkle root."""
    out: list[Key] = []
    for statement in verify_batch(content, lookup):
        if statement.by != signer or statement.step not in (Step.ACCEPTED, Step.RELAYED):
            raise ValueError(f"batch evidence by {signer} holds a {statement.step.value} "
                             f"statement by {statement.by}")
        o = by_id.get(statement.envelope)
        if o is None:
            continue
        recipient = o.sender if statement.step is Step.ACCEPTED else statement.recipient
        if maker(statement.step, sender=o.sender, recipient=recipient) != signer:
            raise ValueError(f"{statement.step.value} evidence of {statement.envelope.hex()} "
                             f"signed by {signer}, who may not attest it")
        out.append(("accepted", o.id, node_of(signer)) if statement.step is Step.ACCEPTED
                   else ("relayed", o.id, recipient))
    return out


def _effect_of(envelope: Envelope, plaintext: bytes, lookup: sealing.KeyLookup,
               by_id: Mapping[bytes, Owed]) -> Key | None:
    """The effect one evidence or notice envelope (opened: ``plaintext``) about an
    envelope the soak sent carries; None for a kind of notice it does not count."""
    h = envelope.header
    assert h.ref is not None
    if h.kind is Kind.EVIDENCE:
        statement = verify_statement(plaintext, lookup).statement
        if statement.envelope != h.ref or statement.by != h.sender:
            raise ValueError(f"evidence by {h.sender} about {h.id_text} names another "
                             "envelope or maker")
        o = by_id[h.ref]
        if statement.step is Step.ACCEPTED:
            key: Key = ("accepted", o.id, node_of(h.sender))
        elif statement.step is Step.RELAYED:
            key = ("relayed", o.id, statement.recipient)
        else:
            return None
        if maker(statement.step, sender=o.sender, recipient=statement.recipients[0]) \
                != statement.by:
            raise ValueError(f"{statement.step.value} evidence of {h.ref.hex()} signed by "
                             f"{statement.by}, who may not attest it")
        return key
    content = codec.unpack(plaintext, what="notice", max_bytes=64 * 1024)
    if not isinstance(content, dict):
        raise ValueError("notice content is not a map")
    if content.get("type") == "non-delivery" and content.get("envelope") == h.ref:
        return ("non-delivery", h.ref, str(content.get("node")))
    forward = content.get("forward")
    if content.get("type") == "disclosure" and isinstance(forward, bytes) and forward in by_id:
        return ("disclosure", forward, str(content.get("node")))
    return None


def exists(where: observe.Where) -> bool:
    """A SQLite file that is there, or a PostgreSQL database (made before the nodes)."""
    return isinstance(where, observe.PgDatabase) or where.is_file()
