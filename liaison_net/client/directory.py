"""The officer directory as the client believes it: only what the network CA vouches for.

The home node serves ``{"node_certs": {node: signing_cert_pem}, "cards": [card]}``. The
client does not take the node's word for any of it: each node signing certificate must
chain to the network CA pinned in the keystore and name the node it is listed under, and
each officer card must verify under its own home node's certified key. What fails is
dropped and reported as a warning, so one bad entry cannot hide the rest, and a node
(even the home node) cannot slip a key of its own choosing under another node's officer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from liaison_net.core import codec, crypto
from liaison_net.core.almanac import CrimeArea
from liaison_net.core.identity import OfficerCard, verify_card
from liaison_net.core.ids import node_principal
from liaison_net.core.rotation import Revocation, verify_revocation
from liaison_net.core.sealing import KeyLookup, RecipientKey, SignerKey
from liaison_net.errors import BadTimestamp, LiaisonError, Malformed, NotFound, Revoked
from liaison_net.pki import certificates

MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
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


def verify_directory(raw: bytes, ca_cert: x509.Certificate, *, now: datetime) -> Directory:
    """Decode the node's answer and keep only what verifies under the CA at ``now``."""
    d = codec.exact_map("directory", codec.unpack(raw, what="directory",
                                                  max_bytes=MAX_DIRECTORY_BYTES),
                        {"node_certs", "cards", "previous_cards", "previous_node_certs",
                         "revocations"})
    node_certs, cards, revocations = d["node_certs"], d["cards"], d["revocations"]
    previous_cards, previous_certs = d["previous_cards"], d["previous_node_certs"]
    if (not isinstance(node_certs, dict) or not isinstance(cards, list)
            or not isinstance(revocations, list) or not isinstance(previous_cards, list)
            or not isinstance(previous_certs, list)):
        raise Malformed("directory node_certs must be a map, the others lists")
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
    # A node's replaced signing keys, each CA-certified like the current one: a peer's
    # re-issued cards reach its node after its new certificate, so for a moment the cards
    # listed are still signed by the old key; they verify under it instead of vanishing.
    previous_node_keys: list[tuple[str, bytes]] = []
    for i, pem in enumerate(previous_certs[:MAX_PREVIOUS_NODE_CERTS]):
        try:
            if not isinstance(pem, bytes):
                raise Malformed("certificate must be bytes")
            previous_node_keys.append(
                certificates.verify_node_signing_certificate(pem, ca_cert, now=now))
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
    return Directory(node_keys, verified, warnings, revoked, previous, previous_node_keys)


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
