"""The officer directory as the client believes it: only what the network CA vouches for.

The home node serves ``{"node_certs": {node: signing_cert_pem}, "cards": [card]}``. The
client does not take the node's word for any of it: each node signing certificate must
chain to the network CA pinned in the keystore and name the node it is listed under, and
each officer card must verify under its own home node's certified key. What fails is
dropped and reported as a warning, so one bad entry cannot hide the rest, and a node
(even the home node) cannot slip a key of its own choosing under another node's officer.

A node's signing key is believed on the CA's word only at first contact. Once the client
holds a key for a node (``held``, kept beside the keystore), a different key is believed only
through that node's co-signed key changes (``core/key_change.follow``), with
``key_change.reader_threshold`` co-signatures of the other national nodes under the keys
the client holds for them (only the nodes of its first directory co-sign: ``cosigners``);
a node key revocation only as a co-signed key change too. The
old revocation signed by the node alone is refused (``CosignThreshold``) and reported as a
warning: whoever holds one node's key and the CA's cannot move what the client believes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from liaison_net.core import codec, crypto, key_change
from liaison_net.core.almanac import CrimeArea
from liaison_net.core.identity import OfficerCard, verify_card
from liaison_net.core.ids import node_principal
from liaison_net.core.rotation import Revocation, Subject, verify_revocation
from liaison_net.core.sealing import KeyLookup, RecipientKey, SignerKey
from liaison_net.errors import (
    BadTimestamp,
    CosignThreshold,
    LiaisonError,
    Malformed,
    NotFound,
    Revoked,
)
from liaison_net.pki import certificates

MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
MAX_NODES = 64  # national nodes in one directory's key changes
MAX_PREVIOUS_NODE_CERTS = 64  # replaced node keys in grace: a few per node at most


@dataclass(frozen=True)
class Directory:
    node_keys: dict[str, bytes]  # node id -> certified Ed25519 public key
    cards: dict[str, OfficerCard]  # officer id -> newest verified card
    warnings: list[str] = field(default_factory=list)
    revoked: dict[bytes, Revocation] = field(default_factory=dict)  # key id -> revocation
    #: Superseded cards still in their grace period: for verifying, never for sealing.
    previous: list[OfficerCard] = field(default_factory=list)
    #: Node signing keys a rotation replaced, still in their grace: (node, public key).
    previous_node_keys: list[tuple[str, bytes]] = field(default_factory=list)
    #: The node keys the client holds after this directory: what it held, moved only by
    #: co-signed key changes, plus nodes met for the first time. Kept for next time.
    held: dict[str, bytes] = field(default_factory=dict)
    #: The nodes whose co-signatures this client counts: those of its first directory. A
    #: node met later is believed for what it signs, never as a co-signer (else whoever
    #: serves the directory could list invented nodes, certified by the CA, to co-sign).
    cosigners: frozenset[str] = frozenset()

    def card(self, officer: str, *, now: int) -> OfficerCard:
        """The card to seal for: it must exist, be valid at ``now`` and its key unrevoked."""
        card = self.cards.get(officer)
        if card is None:
            raise NotFound(f"unknown recipient {officer}: no verified card in the directory")
        if now >= card.valid_until:
            raise BadTimestamp(f"the card of {officer} has expired; their node must renew it")
        revocation = self.revocation_of(officer, now=now)
        if revocation is not None:
            raise Revoked(f"recipient {officer} is revoked (key {revocation.key_id.hex()}): "
                          f"{revocation.reason}")
        return card

    def revocation_of(self, officer: str, *, now: int) -> Revocation | None:
        """The revocation of the officer's current card key, once effective: a revoked
        officer is shown as such and nothing is sealed for them."""
        card = self.cards.get(officer)
        revocation = None if card is None else self.revoked.get(card.signing_key_id)
        if revocation is None or now < revocation.effective:
            return None
        return revocation

    def recipient(self, officer: str, *, now: int) -> RecipientKey:
        return RecipientKey(officer, self.card(officer, now=now).encryption_public)

    def search(self, *, now: int, country: str | None = None, area: CrimeArea | None = None,
               language: str | None = None) -> list[OfficerCard]:
        """The almanac: officers with a card valid at ``now`` that match every criterion
        given (see ``Almanac.matches``), by officer id."""
        return [card for _, card in sorted(self.cards.items())
                if now < card.valid_until and self.revocation_of(card.officer, now=now) is None
                and card.almanac.matches(country=country, area=area, language=language)]

    def lookup(self) -> KeyLookup:
        """Signing key id -> signer, for sealing.verify: every verified card and node key.

        Cards are matched regardless of their validity window: an envelope read today may
        have been signed while the card was valid (the node checked the clock on receipt).
        """
        keys: dict[bytes, SignerKey] = {}
        for node, public in [*self.previous_node_keys, *self.node_keys.items()]:
            keys[crypto.signing_key_id(public)] = SignerKey(node_principal(node), public)
        for card in [*self.previous, *self.cards.values()]:
            keys[card.signing_key_id] = SignerKey(card.officer, card.signing_public)

        def lookup(key_id: bytes) -> SignerKey | None:
            revocation = self.revoked.get(key_id)
            if revocation is not None:
                raise Revoked(f"key {key_id.hex()} of {revocation.principal} was revoked: "
                              f"{revocation.reason}")
            return keys.get(key_id)

        return lookup


def verify_directory(raw: bytes, ca_cert: x509.Certificate, *, now: datetime,
                     held: Mapping[str, bytes] | None = None,
                     cosigners: frozenset[str] | None = None) -> Directory:
    """Decode the node's answer and keep only what verifies under the CA at ``now`` and,
    for node keys, under the keys the client already ``held`` (module docstring), counting
    co-signatures of ``cosigners`` only (default: the nodes held; at the first directory,
    every node in it)."""
    value = codec.unpack(raw, what="directory", max_bytes=MAX_DIRECTORY_BYTES)
    if isinstance(value, dict) and "key_changes" not in value:
        value = {**value, "key_changes": {}}  # a node from before §19's client rule
    d = codec.exact_map("directory", value,
                        {"node_certs", "cards", "previous_cards", "previous_node_certs",
                         "revocations", "key_changes"})
    node_certs, cards, revocations = d["node_certs"], d["cards"], d["revocations"]
    previous_cards, previous_certs = d["previous_cards"], d["previous_node_certs"]
    if (not isinstance(node_certs, dict) or not isinstance(cards, list)
            or not isinstance(revocations, list) or not isinstance(previous_cards, list)
            or not isinstance(previous_certs, list)):
        raise Malformed("directory node_certs must be a map, the others lists")
    chains = _chains(d["key_changes"])
    warnings: list[str] = []
    node_keys: dict[str, bytes] = {}
    for node, pem in node_certs.items():
        try:
            if not isinstance(pem, bytes):
                raise Malformed("certificate must be bytes")
            certified, public = certificates.verify_node_signing_certificate(pem, ca_cert, now=now)
            if certified != node:
                raise Malformed(f"certificate is for node {certified!r}")
        except LiaisonError as exc:
            warnings.append(f"dropped signing certificate listed for node {node!r:.40}: "
                            f"{exc.detail}")
            continue
        node_keys[node] = public
    held_keys = dict(held or {})
    counted = (frozenset(node_keys) if not held_keys
               else frozenset(held_keys) if cosigners is None else cosigners)
    node_keys, moved_from = _believe_node_keys(node_keys, held_keys, chains, counted,
                                               warnings)
    # A node's replaced signing keys, each CA-certified like the current one: a peer's
    # re-issued cards reach its node after its new certificate, so for a moment the cards
    # listed are still signed by the old key; they verify under it instead of vanishing.
    previous_node_keys: list[tuple[str, bytes]] = []
    for i, pem in enumerate(previous_certs[:MAX_PREVIOUS_NODE_CERTS]):
        try:
            if not isinstance(pem, bytes):
                raise Malformed("certificate must be bytes")
            node, public = certificates.verify_node_signing_certificate(pem, ca_cert, now=now)
            if (node in held_keys and public not in moved_from.get(node, ())
                    and not _left_by_rotation(node, public, chains.get(node, []),
                                              _cosigning(node_keys, counted, node))):
                raise CosignThreshold(f"key {crypto.signing_key_id(public).hex()} of {node} "
                                      "is neither held by this client nor replaced by a "
                                      "co-signed key change")
            previous_node_keys.append((node, public))
        except LiaisonError as exc:
            warnings.append(f"dropped previous signing certificate #{i}: {exc.detail}")
    signers = [*node_keys.items(), *previous_node_keys]

    verified: dict[str, OfficerCard] = {}
    signed_by: dict[str, bytes] = {}  # officer -> id of the node key that signed the card
    now_ms = int(now.timestamp() * 1000)
    for i, card_bytes in enumerate(cards):
        found = _verify_any(card_bytes, signers)
        if isinstance(found, str):
            warnings.append(f"dropped card #{i}: {found}")
            continue
        card, node_key_id = found
        if now_ms >= card.valid_until:
            warnings.append(f"card of {card.officer} (version {card.version}) has expired")
        known = verified.get(card.officer)
        if known is None or card.version > known.version:
            verified[card.officer] = card
            signed_by[card.officer] = node_key_id
    previous: list[OfficerCard] = []
    for i, card_bytes in enumerate(previous_cards):
        old = _verify_any(card_bytes, signers)
        if isinstance(old, str):
            warnings.append(f"dropped previous card #{i}: {old}")
        else:
            previous.append(old[0])
    # Who owns which signing key, per what verified: a revocation names one of these.
    owners = {c.signing_key_id: c.officer for c in [*previous, *verified.values()]}
    owners.update({crypto.signing_key_id(k): n for n, k in signers})
    revoked: dict[bytes, Revocation] = {}
    for i, statement in enumerate(revocations):
        try:
            if not isinstance(statement, bytes):
                raise Malformed("revocation must be bytes")
            revocation = verify_revocation(statement, node_keys)
            if revocation.subject is Subject.NODE:
                _check_node_revocation(statement, revocation,
                                       node_keys.get(revocation.principal),
                                       _cosigning(node_keys, counted, revocation.principal))
            owner = owners.get(revocation.key_id)
            # The authority (checked above) revokes its own keys: often one a rotation
            # replaced, which no current certificate or card names any more (a node's old
            # signing key). Such a key id is believed as the principal's unless it is a
            # known key of someone else: then the statement lies and is dropped.
            if owner is not None and owner != revocation.principal:
                raise Malformed(f"key {revocation.key_id.hex()} is not a known key of "
                                f"{revocation.principal}")
        except LiaisonError as exc:
            warnings.append(f"dropped revocation #{i}: {exc.detail}")
            continue
        revoked[revocation.key_id] = revocation
    # A card vouched for only by a revoked node key is vouched for by nobody.
    for officer, node_key_id in signed_by.items():
        if node_key_id in revoked and now_ms >= revoked[node_key_id].effective:
            warnings.append(f"dropped the card of {officer}: signed by revoked node key "
                            f"{node_key_id.hex()}")
            del verified[officer]
    return Directory(node_keys, verified, warnings, revoked, previous, previous_node_keys,
                     {**held_keys, **node_keys}, counted)


def _cosigning(keys: Mapping[str, bytes], counted: frozenset[str], subject: str
               ) -> dict[str, bytes]:
    """The keys whose co-signatures count for a change of ``subject``'s key."""
    return {n: k for n, k in keys.items() if n in counted and n != subject}


def _chains(value: object) -> dict[str, list[bytes]]:
    """``{node: [key change, ...]}``, bounded; the statements are checked by ``follow``."""
    if not isinstance(value, dict) or len(value) > MAX_NODES:
        raise Malformed(f"directory key_changes must map at most {MAX_NODES} nodes")
    chains: dict[str, list[bytes]] = {}
    for node, chain in value.items():
        if (not isinstance(node, str) or not isinstance(chain, list)
                or len(chain) > key_change.MAX_CHAIN
                or not all(isinstance(raw, bytes) for raw in chain)):
            raise Malformed(f"directory key_changes: at most {key_change.MAX_CHAIN} "
                            "statements (bytes) per node")
        chains[node] = chain
    return chains


def _believe_node_keys(certified: dict[str, bytes], held: dict[str, bytes],
                       chains: dict[str, list[bytes]], counted: frozenset[str],
                       warnings: list[str]
                       ) -> tuple[dict[str, bytes], dict[str, set[bytes]]]:
    """The node keys to believe, and per node the keys a believed change moved it from.

    A node met for the first time: its certified key. A node whose certified key is the
    held one: that key. Otherwise the held key's co-signed chain must lead to the certified
    key; until it does the held key stays (cards and evidence under the new key do not
    verify, and a warning says why). Nodes are settled in rounds, so that a change
    co-signed with another node's new key counts once that key is believed.
    """
    believed = {n: k for n, k in certified.items() if n not in held or held[n] == k}
    moved_from: dict[str, set[bytes]] = {n: {held[n]} for n in certified if n in held}
    pending = sorted(n for n in certified if n not in believed)
    why: dict[str, str] = {}
    while pending:
        settled = []
        for node in pending:
            others = _cosigning({**held, **believed}, counted, node)
            try:
                end, applied = key_change.follow(node, chains.get(node, []), held[node],
                                                 others, key_change.reader_threshold(
                                                     len(others)))
                if end != certified[node]:
                    raise CosignThreshold(
                        f"no key change co-signed by the other national nodes leads from "
                        f"the held key {crypto.signing_key_id(held[node]).hex()} to the "
                        f"certified key {crypto.signing_key_id(certified[node]).hex()}")
            except LiaisonError as exc:
                why[node] = exc.detail
                continue
            believed[node] = end
            moved_from[node] = _rotated_away(held[node], applied)
            settled.append(node)
        if not settled:
            break
        pending = [n for n in pending if n not in settled]
    for node in pending:
        believed[node] = held[node]
        warnings.append(f"kept the key this client holds for node {node}; its new "
                        f"certificate is not believed: {why[node]}")
    return believed, moved_from


def _rotated_away(held: bytes, applied: list[key_change.Verified]) -> set[bytes]:
    """The keys a node left by rotation, the held one included: a previous certificate may
    present them (their grace). A key a replacement declared lost is not among them."""
    keys, current = set(), held
    for step in applied:
        new = step.change.new_signing_public
        if new is None:
            continue
        if step.change.kind is key_change.Kind.ROTATE:
            keys.add(current)
        current = new
    return keys


def _left_by_rotation(node: str, public: bytes, chain: list[bytes],
                      others: Mapping[str, bytes]) -> bool:
    """Whether ``public`` was ``node``'s key by the other national nodes' word: a rotation
    away from it, signed by it and co-signed with the client's threshold (a client that
    already moved past it, fetching again, still sees it in its grace)."""
    key_id = crypto.signing_key_id(public)
    for raw in chain:
        try:
            if key_change.decode(raw).change.old_key_id != key_id:
                continue
            change = key_change.verify(raw, subject_key=public, cosigner_keys=others,
                                       threshold=key_change.reader_threshold(len(others)),
                                       last_serial=None, expected_node=node).change
        except LiaisonError:
            continue
        if change.kind is key_change.Kind.ROTATE:
            return True
    return False


def _check_node_revocation(raw: bytes, revocation: Revocation, subject_key: bytes | None,
                           others: Mapping[str, bytes]) -> None:
    """A node key revocation counts only as a co-signed key change, with the client's
    threshold under the keys it holds for the other national nodes."""
    if not key_change.is_key_change(raw):
        raise CosignThreshold(f"a revocation of a key of node {revocation.principal} signed "
                              "by the node alone is not believed: it needs the co-signatures "
                              "of the other national nodes (docs/protocol.md §19)")
    key_change.verify(raw, subject_key=subject_key,
                      cosigner_keys=others,
                      threshold=key_change.reader_threshold(len(others)), last_serial=None,
                      expected_node=revocation.principal)


def _verify_any(raw: object, signers: list[tuple[str, bytes]]
                ) -> tuple[OfficerCard, bytes] | str:
    """The card, and the id of the certified node key that vouches for it (as its home
    node), else why not.

    The card's home node is inside the signed body, which is only decoded after a signature
    verifies; trying each certified node key (a handful) keeps that order.
    """
    if not isinstance(raw, bytes):
        return "not bytes"
    reason = "no certified node key signed it"
    for node, public in signers:
        try:
            return (verify_card(raw, node_public=public, node_id=node, now=None),
                    crypto.signing_key_id(public))
        except LiaisonError as exc:
            if exc.code != "bad_signature":
                reason = exc.detail
    return reason
