"""Officer cards and enrolment requests: who holds which public keys, vouched for by whom.

An officer generates both key pairs on their own machine and hands the home node an
*enrolment request*, signed with the new signing key (proof of possession). The node signs
an *officer card* with its CA-certified node signing key; cards federate to every peer's
directory, and a peer believes a card only if the signature verifies under the home node's
certified key. Like envelopes, signed objects travel as ``[body_bytes, signature]`` so the
signature is checked over exact bytes before the body is decoded.

Both carry the officer's almanac entry (languages, posting, coverage: ``core.almanac``). The
officer states it in the request; the administrator confirms it with the key ids before
enrolling, and the card makes it the home node's word, which no one else can change.

Both public keys are checked where they enter (``weak_key``: no low-order, non-canonical or
off-curve point), in the request, before a card is issued, and in every card believed, so
a card pushed by a compromised peer cannot put a key into a directory that every node and
client would then seal to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec, crypto
from liaison_net.core.almanac import FIELDS as ALMANAC_FIELDS
from liaison_net.core.almanac import Almanac
from liaison_net.core.ids import NODE_HANDLE, check_officer_id, node_of
from liaison_net.errors import BadTimestamp, Malformed

CARD_DOMAIN = b"liaison-net/officer-card/v1\x00"
REQUEST_DOMAIN = b"liaison-net/enrolment-request/v1\x00"
MAX_CARD_BYTES = 4096
MAX_NAME_CHARS = 128
REQUEST_FIELDS = frozenset({"officer", "name", "role", "signing_public", "encryption_public",
                            *ALMANAC_FIELDS})
CARD_FIELDS = REQUEST_FIELDS | {"version", "valid_from", "valid_until"}


@dataclass(frozen=True)
class EnrolmentRequest:
    officer: str
    name: str
    role: str
    signing_public: bytes
    encryption_public: bytes
    almanac: Almanac

    def to_wire(self) -> dict[str, Any]:
        return {"officer": self.officer, "name": self.name, "role": self.role,
                "signing_public": self.signing_public,
                "encryption_public": self.encryption_public, **self.almanac.to_wire()}


@dataclass(frozen=True)
class OfficerCard:
    officer: str
    name: str
    role: str
    signing_public: bytes
    encryption_public: bytes
    version: int
    valid_from: int  # ms
    valid_until: int  # ms
    almanac: Almanac

    @property
    def node(self) -> str:
        return node_of(self.officer)

    @property
    def signing_key_id(self) -> bytes:
        return crypto.signing_key_id(self.signing_public)

    @property
    def encryption_key_id(self) -> bytes:
        return crypto.encryption_key_id(self.encryption_public)

    def to_wire(self) -> dict[str, Any]:
        return {"officer": self.officer, "name": self.name, "role": self.role,
                "signing_public": self.signing_public,
                "encryption_public": self.encryption_public, "version": self.version,
                "valid_from": self.valid_from, "valid_until": self.valid_until,
                **self.almanac.to_wire()}


def renewal(card: OfficerCard, *, signing_public: bytes | None = None,
            encryption_public: bytes | None = None) -> EnrolmentRequest:
    """The request behind the next version of ``card``: the same officer, name, role and
    almanac entry, with new keys if given (an officer's rotation) or the same ones (a node
    re-issuing its cards under a new node key)."""
    return EnrolmentRequest(
        card.officer, card.name, card.role,
        card.signing_public if signing_public is None else signing_public,
        card.encryption_public if encryption_public is None else encryption_public,
        card.almanac)


def _signed(domain: bytes, body: dict[str, Any], key: crypto.SigningKeyPair) -> bytes:
    body_bytes = codec.pack(body)
    return codec.pack([body_bytes, crypto.sign(key, domain + body_bytes)])


def _split_signed(raw: bytes, what: str) -> tuple[bytes, bytes]:
    value = codec.unpack(raw, what=what, max_bytes=MAX_CARD_BYTES)
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], bytes)
            or not isinstance(value[1], bytes)):
        raise Malformed(f"{what} must be [body bytes, signature]")
    return value[0], value[1]


def _text(d: dict[str, Any], key: str, what: str) -> str:
    value = d[key]
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise Malformed(f"{what} {key} must be 1-{MAX_NAME_CHARS} characters")
    if any(ord(c) < 32 for c in value):
        raise Malformed(f"{what} {key} contains control characters")
    return value


def _pubkey(d: dict[str, Any], key: str, what: str) -> bytes:
    value = d[key]
    if not isinstance(value, bytes) or len(value) != crypto.PUBLIC_KEY_BYTES:
        raise Malformed(f"{what} {key} must be a 32-byte public key")
    return value


def _check_keys(what: str, signing_public: bytes, encryption_public: bytes) -> None:
    crypto.check_signing_public(signing_public, f"{what} signing_public")
    crypto.check_encryption_public(encryption_public, f"{what} encryption_public")


def sign_enrolment_request(request: EnrolmentRequest, key: crypto.SigningKeyPair) -> bytes:
    if key.public != request.signing_public:
        raise Malformed("enrolment request must be signed by the key it enrols")
    return _signed(REQUEST_DOMAIN, request.to_wire(), key)


def verify_enrolment_request(raw: bytes) -> EnrolmentRequest:
    """Verify proof of possession (the request is signed by the key it carries)."""
    body, signature = _split_signed(raw, "enrolment request")
    d = codec.exact_map("enrolment request", codec.unpack(body, what="enrolment request",
                                                          max_bytes=MAX_CARD_BYTES),
                        set(REQUEST_FIELDS))
    signing_public = _pubkey(d, "signing_public", "enrolment request")
    # Self-signed: the key is in the body, so it is checked before it checks the signature.
    crypto.check_signing_public(signing_public, "enrolment request signing_public")
    crypto.verify(signing_public, REQUEST_DOMAIN + body, signature)
    officer = check_officer_id(d["officer"])
    if officer.split("/")[1] == NODE_HANDLE:
        raise Malformed(f"the handle '{NODE_HANDLE}' is reserved for the node itself")
    request = EnrolmentRequest(
        officer=officer,
        name=_text(d, "name", "enrolment request"),
        role=_text(d, "role", "enrolment request"),
        signing_public=signing_public,
        encryption_public=_pubkey(d, "encryption_public", "enrolment request"),
        almanac=Almanac.from_wire(d, what="enrolment request"),
    )
    _check_keys(f"enrolment request of {officer}", request.signing_public,
                request.encryption_public)
    return request


def issue_card(request: EnrolmentRequest, *, node_id: str, node_key: crypto.SigningKeyPair,
               version: int, now: int, valid_for_ms: int) -> bytes:
    """The home node vouches for the officer's keys: a signed card, as bytes."""
    if node_of(request.officer) != node_id:
        raise Malformed(f"{request.officer} does not belong to node {node_id}")
    _check_keys(f"card of {request.officer}", request.signing_public, request.encryption_public)
    card = OfficerCard(request.officer, request.name, request.role, request.signing_public,
                       request.encryption_public, version, now, now + valid_for_ms,
                       request.almanac.validate())
    return _signed(CARD_DOMAIN, card.to_wire(), node_key)


def verify_card(raw: bytes, *, node_public: bytes, node_id: str, now: int | None) -> OfficerCard:
    """Believe a card only under its home node's certified key and, given ``now``, unexpired."""
    body, signature = _split_signed(raw, "officer card")
    crypto.verify(node_public, CARD_DOMAIN + body, signature)
    card = _decode_card(body)
    if card.node != node_id:
        raise Malformed(f"card for {card.officer} is not signed by its home node")
    if card.officer.split("/")[1] == NODE_HANDLE:
        # As enrolment refuses it: a card key signing as ``<node>/node`` would speak as
        # the node itself, and outlive the node key's revocation (review16h).
        raise Malformed(f"the handle '{NODE_HANDLE}' is reserved for the node itself")
    _check_keys(f"officer card of {card.officer}", card.signing_public, card.encryption_public)
    if card.valid_until <= card.valid_from:
        raise BadTimestamp("officer card validity is empty")
    # Only the end of validity is checked against the clock: a card issued a moment ago by
    # a node whose clock runs ahead must still be believed.
    if now is not None and now >= card.valid_until:
        raise BadTimestamp(f"officer card of {card.officer} has expired")
    return card


def decode_stored_card(raw: bytes) -> OfficerCard:
    """A card from the node's own store, which holds only cards ``verify_card`` accepted
    (put_card's callers verify first): decoded as strictly, the signature not re-checked,
    since the store does not keep every peer's key history beside it."""
    body, _ = _split_signed(raw, "officer card")
    return _decode_card(body)


def _decode_card(body: bytes) -> OfficerCard:
    d = codec.exact_map("officer card", codec.unpack(body, what="officer card",
                                                     max_bytes=MAX_CARD_BYTES),
                        set(CARD_FIELDS))
    numbers = []
    for key in ("version", "valid_from", "valid_until"):
        value = d[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 53:
            raise Malformed(f"officer card {key} must be a positive integer")
        numbers.append(value)
    return OfficerCard(
        officer=check_officer_id(d["officer"]),
        name=_text(d, "name", "officer card"),
        role=_text(d, "role", "officer card"),
        signing_public=_pubkey(d, "signing_public", "officer card"),
        encryption_public=_pubkey(d, "encryption_public", "officer card"),
        version=numbers[0], valid_from=numbers[1], valid_until=numbers[2],
        almanac=Almanac.from_wire(d, what="officer card"),
    )
