"""The envelope: the one wire object that carries every alert, request, signal and notice.

Wire form (canonical msgpack, see docs/protocol.md)::

    frame  = [version, header_bytes, body_bytes, signer_key_id, signature]
    header = {version, id, kind, precedence, sender, sender_key, recipients, created,
              expires, tag, ref, signal, urgency, consent, original}  # signed, not encrypted
    body   = {nonce, wraps, ciphertext}                # signed; ciphertext's AD = header_bytes
    signature = Ed25519(signer, DOMAIN || len(header_bytes) || header_bytes
                                || SHA-256(body_bytes))

The signature covers the body through its SHA-256, so a header, the body's digest and the
signature (a signed skeleton, ``core/retention.py``) verify without the body: a forward
carries its original that way (``original``), and every party checks the original's tag
and owner without having the original in hand (``core/tagflow.py``).

Header and body travel as byte strings inside the frame, so the signature is checked over
the exact bytes received before any of them is decoded (``read_frame`` names what it
returns as unverified). Decoding is strict: one version, the exact field set, exact types,
sizes under ``Limits``, and canonical bytes only.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from liaison_net.core import codec
from liaison_net.core.crypto import (
    AEAD_TAG_BYTES,
    KEY_ID_BYTES,
    NONCE_BYTES,
    SIGNATURE_BYTES,
    WRAPPED_KEY_BYTES,
)
from liaison_net.core.frozen import build
from liaison_net.core.ids import (
    ENVELOPE_ID_BYTES,
    check_envelope_id,
    check_officer_id,
    id_to_text,
    node_of,
)
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.core.ownership import OwnershipTag, UsualTagWire, usual_tag
from liaison_net.core.signals import SignalAnnex
from liaison_net.errors import BadTimestamp, Expired, LiaisonError, LimitExceeded, Malformed

VERSION = 1
SIGNATURE_DOMAIN = b"liaison-net/envelope/v1\x00"
_FRAME_OVERHEAD = 64


class Kind(enum.Enum):
    MESSAGE = "message"  # an alert or information from one officer to others
    REQUEST = "request"  # asks for information, with a legal deadline
    REPLY = "reply"  # answers a request (``ref`` names it)
    SIGNAL = "signal"  # a radicalisation early-warning signal
    EVIDENCE = "evidence"  # signed delivery evidence sealed for the sender
    NOTICE = "notice"  # non-delivery and other notices from a node
    RESTRICT = "restrict"  # the owner tightens the tag of an envelope sent (core/restriction)
    RECALL = "recall"  # the owner withdraws an envelope sent: its content is purged


class Urgency(enum.Enum):
    """Directive (EU) 2023/977, art. 5: time limits for answering a request."""

    URGENT_DIRECT = "urgent-direct"  # urgent, directly accessible information: 8 hours
    URGENT_INDIRECT = "urgent-indirect"  # urgent, indirectly accessible information: 3 days
    OTHER = "other"  # all other requests: 7 days

    @property
    def period_ms(self) -> int:
        return {Urgency.URGENT_DIRECT: 8 * 3_600_000, Urgency.URGENT_INDIRECT: 3 * 86_400_000,
                Urgency.OTHER: 7 * 86_400_000}[self]


class Precedence(enum.IntEnum):
    """NATO-style precedence; a higher value is served first by every outbox."""

    ROUTINE = 0
    PRIORITY = 1
    IMMEDIATE = 2
    FLASH = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: object) -> Precedence:
        # ASCII only: 'pr\u0131ority'.upper() is 'PRIORITY' too (tests/fuzz regressions).
        if (isinstance(label, str) and label.isascii() and label.islower()
                and label.upper() in cls.__members__):
            return cls[label.upper()]
        allowed = ", ".join(p.label for p in cls)
        raise Malformed(f"precedence must be one of {allowed}, got {label!r:.40}")


@dataclass(frozen=True)
class Recipient:
    officer: str  # `<node>/<handle>`
    key_id: bytes  # the X25519 key the content key was wrapped for

    @property
    def node(self) -> str:
        return node_of(self.officer)


@dataclass(frozen=True)
class Header:
    id: bytes
    kind: Kind
    precedence: Precedence
    sender: str
    sender_key: bytes
    recipients: tuple[Recipient, ...]
    created: int  # ms since the epoch
    expires: int  # ms since the epoch
    tag: OwnershipTag
    ref: bytes | None = None  # the envelope this one replies to, forwards or reports on
    signal: SignalAnnex | None = None  # severity and pseudonyms; present iff kind is signal
    urgency: Urgency | None = None  # present iff kind is request: sets the legal due time
    consent: bytes | None = None  # the owner's signed consent that makes this forward valid
    original: bytes | None = None  # a forward's original: its signed skeleton (retention.py)

    @property
    def due(self) -> int | None:
        """When a request must be answered (created + the urgency's period)."""
        return self.created + self.urgency.period_ms if self.urgency is not None else None

    @property
    def id_text(self) -> str:
        return id_to_text(self.id)

    @property
    def recipient_nodes(self) -> frozenset[str]:
        return frozenset(r.node for r in self.recipients)

    def to_wire(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "id": self.id,
            "kind": self.kind.value,
            "precedence": self.precedence.label,
            "sender": self.sender,
            "sender_key": self.sender_key,
            "recipients": [[r.officer, r.key_id] for r in self.recipients],
            "created": self.created,
            "expires": self.expires,
            "tag": self.tag.to_wire(),
            "ref": self.ref,
            "signal": self.signal.to_wire() if self.signal is not None else None,
            "urgency": self.urgency.value if self.urgency is not None else None,
            "consent": self.consent,
            "original": self.original,
        }


@dataclass(frozen=True)
class Body:
    nonce: bytes
    wraps: tuple[bytes, ...]  # one wrapped content key per recipient, same order
    ciphertext: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "wraps": list(self.wraps), "ciphertext": self.ciphertext}


@dataclass(frozen=True)
class UnverifiedFrame:
    """The outer frame, split but not trusted: nothing in it has been verified yet."""

    header_bytes: bytes
    body_bytes: bytes
    signer_key_id: bytes
    signature: bytes
    raw: bytes | None = field(default=None, compare=False, repr=False)  # the frame as read

    @property
    def signed_message(self) -> bytes:
        # ``signed_message`` inline (one call, not three, per envelope verified): the body's
        # digest is 32 bytes by construction, so ``signed_digest_message``'s check is moot.
        header_bytes = self.header_bytes
        return b"".join((SIGNATURE_DOMAIN, _LENGTH.pack(len(header_bytes)), header_bytes,
                         _sha256(self.body_bytes).digest()))


@dataclass(frozen=True)
class Envelope:
    """A verified (or freshly sealed) envelope, with the exact bytes it travels as."""

    header: Header
    body: Body
    header_bytes: bytes
    body_bytes: bytes
    signature: bytes
    # The frame exactly as received, when verified from bytes (``received``): canonical
    # decoding proved it equal to the encoding of the fields above, so ``to_bytes`` hands it
    # back unencoded. Not an init field, so ``dataclasses.replace`` drops it.
    raw: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def id(self) -> bytes:
        return self.header.id

    def to_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return encode_frame(self.header_bytes, self.body_bytes, self.header.sender_key,
                            self.signature)


def received(envelope: Envelope, raw: bytes | None) -> Envelope:
    """``envelope`` remembering the frame it was verified from (``sealing.verify_frame``)."""
    object.__setattr__(envelope, "raw", raw)  # frozen: set once, before anyone sees it
    return envelope


def signed_message(header_bytes: bytes, body_bytes: bytes) -> bytes:
    return signed_digest_message(header_bytes, _sha256(body_bytes).digest())


_sha256 = hashlib.sha256


def signed_digest_message(header_bytes: bytes, body_sha256: bytes) -> bytes:
    """What the sender signs: the domain, the header (length-prefixed) and the body's
    SHA-256, so header, digest and signature verify without the body (a forward's original)."""
    if len(body_sha256) != BODY_DIGEST_BYTES:
        raise Malformed(f"body digest must be {BODY_DIGEST_BYTES} bytes")
    return b"".join((SIGNATURE_DOMAIN, _LENGTH.pack(len(header_bytes)), header_bytes,
                     body_sha256))


_LENGTH = struct.Struct(">I")


BODY_DIGEST_BYTES = 32


def encode_frame(header_bytes: bytes, body_bytes: bytes, signer_key_id: bytes,
                 signature: bytes) -> bytes:
    return codec.pack([VERSION, header_bytes, body_bytes, signer_key_id, signature])


def _split_canonical_frame(raw: bytes) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """The frame's items when ``raw`` is exactly the canonical encoding of a version-1 frame
    with a 16-byte key id and a 64-byte signature, else None (then ``codec.unpack`` decides
    and names the fault). msgspec's typed C decoder (``_UsualFrame``) reads the five items
    with their exact types and sizes, and its re-encoding must give ``raw`` back byte for
    byte: then ``raw`` is what ``encode_frame`` writes for them (its encoder writes the
    shortest forms, as ``codec.pack`` does: tests/core/test_msgspec_canonical.py), so it
    accepts nothing that ``codec.unpack`` refuses and returns the same items
    (tests/core/test_codec_fastpath.py)."""
    try:
        frame = _decode_frame(raw)
    except Exception:  # anything at all (DecodeError, ValidationError): the checks name it
        return None
    return frame if _encode_plain(frame) == raw else None


_UsualFrame = tuple[Literal[1], bytes, bytes,
                    Annotated[bytes, Meta(min_length=KEY_ID_BYTES, max_length=KEY_ID_BYTES)],
                    Annotated[bytes, Meta(min_length=SIGNATURE_BYTES,
                                          max_length=SIGNATURE_BYTES)]]
_decode_frame = msgspec.msgpack.Decoder(_UsualFrame).decode
_encode_plain = msgspec.msgpack.Encoder().encode  # frames and bodies: no struct to sort


def read_frame(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> UnverifiedFrame:
    """Split the outer frame; check only its shape and sizes."""
    # The cheap bound first: header and body limits alone are under the envelope's.
    frame = (_split_canonical_frame(raw)
             if type(raw) is bytes and (len(raw) <= limits.max_header_bytes
                                        + limits.max_body_bytes
                                        or len(raw) <= limits.max_envelope_bytes) else None)
    if frame is not None and len(frame[1]) <= limits.max_header_bytes:
        # The split made version 1, four byte strings, a 16-byte key id and a 64-byte
        # signature: of the checks below, only the header's size is left.
        return build(UnverifiedFrame, header_bytes=frame[1], body_bytes=frame[2],
                     signer_key_id=frame[3], signature=frame[4], raw=raw)
    if frame is None:
        frame = codec.unpack(raw, what="envelope", max_bytes=limits.max_envelope_bytes)
        raw = bytes(raw)  # accepted below only if canonical: then it is the frame's encoding
    if not isinstance(frame, list | tuple) or len(frame) != 5:  # a tuple: the split's
        raise Malformed("envelope must be an array of 5 items")
    version, header_bytes, body_bytes, key_id, signature = frame
    if version != VERSION or isinstance(version, bool):
        raise Malformed(f"unsupported envelope version {version!r:.20}")
    for name, value in (("header", header_bytes), ("body", body_bytes),
                        ("signer key id", key_id), ("signature", signature)):
        if not isinstance(value, bytes):
            raise Malformed(f"envelope {name} must be bytes")
    if len(header_bytes) > limits.max_header_bytes:
        raise LimitExceeded(f"header is {len(header_bytes)} bytes, "
                            f"limit {limits.max_header_bytes}")
    if len(key_id) != KEY_ID_BYTES:
        raise Malformed("signer key id must be 16 bytes")
    if len(signature) != SIGNATURE_BYTES:
        raise Malformed("signature must be 64 bytes")
    return build(UnverifiedFrame, header_bytes=header_bytes, body_bytes=body_bytes,
                 signer_key_id=key_id, signature=signature, raw=raw)


_KINDS = {k.value: k for k in Kind}  # Kind(value) without Enum.__call__ (decode_header)
_PRECEDENCES = {p.label: p for p in Precedence}  # what ``Precedence.from_label`` accepts
_MAX_TIME = 1 << 48  # ``_time``'s bound
_HEADER_FIELDS = {
    "version", "id", "kind", "precedence", "sender", "sender_key", "recipients",
    "created", "expires", "tag", "ref", "signal", "urgency", "consent", "original",
}
MAX_CONSENT_BYTES = 4096
_BODY_FIELDS = {"nonce", "wraps", "ciphertext"}


def decode_header(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Strictly decode header bytes (call only on bytes whose signature has verified)."""
    header = _decode_usual_header(raw, limits)
    if header is not None:
        return header
    value = codec.unpack(raw, what="header", max_bytes=limits.max_header_bytes)
    d = (value if type(value) is dict and value.keys() == _HEADER_FIELDS
         else codec.exact_map("header", value, _HEADER_FIELDS))
    if d["version"] != VERSION or isinstance(d["version"], bool):
        raise Malformed(f"unsupported header version {d['version']!r:.20}")
    try:
        kind = _KINDS.get(d["kind"]) if type(d["kind"]) is str else None
        kind = Kind(d["kind"]) if kind is None else kind  # the miss names the fault
    except (ValueError, TypeError) as exc:
        allowed = ", ".join(k.value for k in Kind)
        raise Malformed(f"kind must be one of {allowed}, got {d['kind']!r:.40}") from exc
    recipients = _recipients(d["recipients"], limits)
    ref = d["ref"]
    if ref is not None:
        check_envelope_id(ref)
    sender_key = d["sender_key"]
    if not isinstance(sender_key, bytes) or len(sender_key) != KEY_ID_BYTES:
        raise Malformed("sender_key must be a 16-byte key id")
    # Each field's check inline for the usual value (a type test, a lookup); anything
    # else goes through the helper, which names the fault, in the same order as before.
    envelope_id = d["id"]
    if type(envelope_id) is not bytes or len(envelope_id) != ENVELOPE_ID_BYTES:
        envelope_id = check_envelope_id(envelope_id)
    label = d["precedence"]
    precedence = _PRECEDENCES.get(label) if type(label) is str else None
    if precedence is None:
        precedence = Precedence.from_label(label)
    sender = check_officer_id(d["sender"], what="sender")
    created, expires = d["created"], d["expires"]
    if type(created) is not int or not 0 < created < _MAX_TIME:
        created = _time("created", created)
    if type(expires) is not int or not 0 < expires < _MAX_TIME:
        expires = _time("expires", expires)
    tag = OwnershipTag.from_wire(d["tag"], limits)
    signal = d["signal"]
    urgency, consent, original = d["urgency"], d["consent"], d["original"]
    header = build(
        Header,
        id=envelope_id,
        kind=kind,
        precedence=precedence,
        sender=sender,
        sender_key=sender_key,
        recipients=recipients,
        created=created,
        expires=expires,
        tag=tag,
        ref=ref,
        signal=SignalAnnex.from_wire(signal) if signal is not None else None,
        urgency=_urgency(urgency) if urgency is not None else None,
        consent=_consent(consent) if consent is not None else None,
        original=_original(original, limits) if original is not None else None,
    )
    check_header_shape(header, limits)
    return header


_KeyId = Annotated[bytes, Meta(min_length=KEY_ID_BYTES, max_length=KEY_ID_BYTES)]


class _UsualHeader(msgspec.Struct, forbid_unknown_fields=True):
    """The usual header's wire schema for msgspec's typed C decoder: the fields in
    canonical (sorted) order, so that its encoder writes them as ``codec.pack`` does; each
    of the exact type ``decode_header`` wants (``strict``: no int for a float, no str for
    bytes), fixed sizes and time bounds checked in C; the tag's schema is
    ``ownership.UsualTagWire``."""

    consent: Annotated[bytes, Meta(min_length=1, max_length=MAX_CONSENT_BYTES)] | None
    created: Annotated[int, Meta(gt=0, lt=_MAX_TIME)]
    expires: Annotated[int, Meta(gt=0, lt=_MAX_TIME)]
    id: Annotated[bytes, Meta(min_length=ENVELOPE_ID_BYTES, max_length=ENVELOPE_ID_BYTES)]
    kind: Kind
    original: Annotated[bytes, Meta(min_length=1)] | None
    precedence: str
    recipients: Annotated[list[tuple[str, _KeyId]], Meta(min_length=1)]
    ref: Annotated[bytes, Meta(min_length=ENVELOPE_ID_BYTES,
                               max_length=ENVELOPE_ID_BYTES)] | None
    sender: str
    sender_key: _KeyId
    signal: None  # an annex takes the full path
    tag: UsualTagWire
    urgency: Urgency | None
    version: Literal[1]


_decode_usual = msgspec.msgpack.Decoder(_UsualHeader).decode
_encode_usual = msgspec.msgpack.Encoder().encode


def _decode_usual_header(raw: bytes, limits: Limits) -> Header | None:
    """The usual header, decoded, else None (then ``decode_header``'s checks decide and name
    the fault). Usual: canonical, no signal annex, every field of its exact type and a
    known value. Accepts nothing the checks refuse and gives the same header
    (tests/core/test_header_fastpath.py, tests/core/test_decode_fastpath.py), at a fraction
    of their cost: msgspec's typed C decoder (``_UsualHeader``, the tag's
    ``ownership.UsualTagWire``) checks the field sets, types, sizes and time bounds, in any
    key order; the values left are checked here and in ``usual_tag``; then msgspec's
    re-encoding must equal ``raw`` byte for byte, which proves the canonical form (keys in
    the structs' field order, which is the sorted one; a repeated key shortens it; every
    leaf is of its exact type, so none is a float; its encoder writes the shortest forms as
    ``codec.pack`` does:
    tests/core/test_msgspec_canonical.py)."""
    if type(raw) is not bytes or len(raw) > limits.max_header_bytes:
        return None
    try:
        h = _decode_usual(raw)
    except Exception:  # anything at all (DecodeError, ValidationError): the checks name it
        return None
    envelope_id, created, expires, kind, consent, original, recipients, ref, urgency = (
        h.id, h.created, h.expires, h.kind, h.consent, h.original, h.recipients, h.ref,
        h.urgency)
    sender_key = h.sender_key
    if (created >= expires or len(recipients) > limits.max_recipients
            or (original is not None and len(original) > limits.max_header_bytes)):
        return None
    tag = usual_tag(h.tag, limits)
    try:  # a miss (KeyError), an unhashable value (TypeError), a bad id (Malformed)
        precedence = _PRECEDENCES[h.precedence]
        sender = check_officer_id(h.sender, what="sender")
        people = tuple([_RECIPIENTS.get(item) or _recipient(item) for item in recipients])
    except (KeyError, Malformed):
        return None
    if tag is None or _encode_usual(h) != raw:
        return None
    header = _new(Header)  # ``build`` inline: one call less per header
    header.__dict__.update(id=envelope_id, kind=kind, precedence=precedence, sender=sender,
                           sender_key=sender_key, recipients=people, created=created,
                           expires=expires, tag=tag, ref=ref, signal=None, urgency=urgency,
                           consent=consent, original=original)
    if consent is not None or original is not None or kind in _UNPLAIN_KINDS:
        try:  # a forward or an update: every rule of the shape
            check_header_shape(header, limits)
        except LiaisonError:
            return None
        return header
    # ``check_header_shape``'s rules left for a plain header (no signal, consent or
    # original; id, ref, times and recipients' count checked above).
    retain_until = tag.retain_until
    if (int.from_bytes(envelope_id[:6], "big") != created
            or expires - created > limits.max_ttl_ms or retain_until < expires
            or retain_until - created > limits.max_retention_ms
            or (kind is _REQUEST) != (urgency is not None)
            or (kind is _REPLY and ref is None)
            or (len(people) > 1 and len({r.officer for r in people}) != len(people))):
        return None
    return header


def _recipient(item: tuple[str, bytes]) -> Recipient:
    """The recipient of a usual header's ``[officer, key id]`` (msgspec checked the types
    and the key id's size); its officer id checked, and remembered with the recipient
    object: an office writes to the same officers under the same keys, so the next header
    naming them looks the pair up (``_RECIPIENTS``: a pure fact about the pair, bounded)."""
    officer, key_id = item
    recipient = build(Recipient, officer=check_officer_id(officer), key_id=key_id)
    if len(_RECIPIENTS) >= _MAX_RECIPIENTS:
        _RECIPIENTS.clear()  # full: start again with the pairs in use (as ``_TAG_FACTS``)
    _RECIPIENTS[item] = recipient  # the officer id is bounded by its own rule
    return recipient


_RECIPIENTS: dict[tuple[str, bytes], Recipient] = {}
_MAX_RECIPIENTS = 4096
_new = object.__new__


# Members as module globals: ``Kind.REQUEST`` goes through the enum class's ``__getattr__``
# hook (Python 3.11), ten times the cost of a global's lookup, on every header.
_REQUEST, _REPLY = Kind.REQUEST, Kind.REPLY
# The kinds whose rules ``_decode_usual_header`` does not check inline: a signal (its annex
# takes the full path) and the updates (they carry an original). A tuple: ``in`` compares
# identities first, where a set would hash each member (a Python call for an enum).
_UNPLAIN_KINDS = (Kind.SIGNAL, Kind.RESTRICT, Kind.RECALL)


def check_header_shape(header: Header, limits: Limits) -> None:
    """Rules about a header that do not depend on the clock."""
    if int.from_bytes(check_envelope_id(header.id)[:6], "big") != header.created:
        raise Malformed("envelope id time does not match created")
    if header.expires <= header.created:
        raise BadTimestamp("expires must be after created")
    if header.expires - header.created > limits.max_ttl_ms:
        raise LimitExceeded(f"lifetime exceeds {limits.max_ttl_ms} ms")
    if header.tag.retain_until < header.expires:
        raise BadTimestamp("tag retain_until must not be before expires")
    if header.tag.retain_until - header.created > limits.max_retention_ms:
        raise LimitExceeded(f"retention exceeds {limits.max_retention_ms} ms")
    if header.ref is not None:
        check_envelope_id(header.ref)
    if (header.kind is Kind.SIGNAL) != (header.signal is not None):
        raise Malformed("a signal annex is required for kind signal and only then")
    if (header.kind is Kind.REQUEST) != (header.urgency is not None):
        raise Malformed("an urgency is required for kind request and only then")
    if header.kind is Kind.REPLY and header.ref is None:
        raise Malformed("a reply must name the request it answers in ref")
    if header.consent is not None and header.ref is None:
        raise Malformed("a consent comes with a forward, which names the original in ref")
    updates = (Kind.RESTRICT, Kind.RECALL)
    if header.original is not None and (header.ref is None
                                        or header.kind not in (Kind.MESSAGE, *updates)):
        raise Malformed("an original comes with a forward or an update, naming it in ref")
    if header.kind in updates and (header.original is None or header.consent is not None):
        raise Malformed("an update carries the original it updates, and no consent")
    if not header.recipients or len(header.recipients) > limits.max_recipients:
        raise LimitExceeded(f"recipients must number 1 to {limits.max_recipients}")
    officers = [r.officer for r in header.recipients]
    if len(set(officers)) != len(officers):
        raise Malformed("recipients must not repeat")


def check_fresh(header: Header, now: int, limits: Limits = DEFAULT_LIMITS) -> None:
    """Clock rules, applied when an envelope is submitted, relayed or delivered."""
    if header.created > now + limits.max_clock_skew_ms:
        # Name the skew: operators must tell a drifting clock from a forged timestamp.
        raise BadTimestamp(f"envelope {header.id_text} created {_span(header.created - now)} "
                           f"ahead of this node's clock (in the future); the clock-skew "
                           f"window is {_span(limits.max_clock_skew_ms)}")
    if now >= header.expires:
        raise Expired(f"envelope {header.id_text} expired")


def _span(ms: int) -> str:
    """A duration for a person: ``5 min``, ``10.2 min``, ``3.5 s``, ``250 ms``."""
    if ms >= 60_000:
        return f"{ms // 60_000} min" if ms % 60_000 == 0 else f"{ms / 60_000:.1f} min"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms} ms"


def decode_body(raw: bytes, recipients: int, limits: Limits = DEFAULT_LIMITS) -> Body:
    # ciphertext (content + AEAD tag + bin32 prefix), the wraps (bin8 prefix each, array
    # prefix), the nonce and the map's keys: generous by a few bytes, never short.
    max_ciphertext = limits.max_body_bytes + AEAD_TAG_BYTES
    max_bytes = max_ciphertext + recipients * (WRAPPED_KEY_BYTES + 2) + _FRAME_OVERHEAD
    parts = (_split_canonical_body(raw, recipients)
             if type(raw) is bytes and len(raw) <= max_bytes else None)
    if parts is not None and AEAD_TAG_BYTES <= len(parts[2]) <= max_ciphertext:
        # The split made a 24-byte nonce and one 80-byte wrap per recipient: of the checks
        # below, only the ciphertext's size is left.
        return build(Body, nonce=parts[0], wraps=parts[1], ciphertext=parts[2])
    if parts is None:
        d = codec.exact_map("body", codec.unpack(raw, what="body", max_bytes=max_bytes),
                            _BODY_FIELDS)
        parts = d["nonce"], d["wraps"], d["ciphertext"]
    nonce, wraps, ciphertext = parts
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise Malformed(f"nonce must be {NONCE_BYTES} bytes")
    if not isinstance(wraps, list | tuple) or len(wraps) != recipients:  # tuple: the split's
        raise Malformed("wraps must hold exactly one wrapped key per recipient")
    for w in wraps:
        if not isinstance(w, bytes) or len(w) != WRAPPED_KEY_BYTES:
            raise Malformed(f"each wrapped key must be {WRAPPED_KEY_BYTES} bytes")
    if not isinstance(ciphertext, bytes) or len(ciphertext) < AEAD_TAG_BYTES:
        raise Malformed("ciphertext must be bytes holding at least the AEAD tag")
    if len(ciphertext) > limits.max_body_bytes + AEAD_TAG_BYTES:
        raise LimitExceeded(f"ciphertext exceeds {limits.max_body_bytes} bytes")
    return build(Body, nonce=nonce, wraps=tuple(wraps), ciphertext=ciphertext)


def _split_canonical_body(raw: bytes, recipients: int) -> tuple[bytes, tuple[bytes, ...],
                                                                 bytes] | None:
    """Nonce, wraps and ciphertext when ``raw`` is exactly the canonical encoding of a body
    with a 24-byte nonce and ``recipients`` 80-byte wraps, else None (``codec.unpack`` then
    decides and names the fault). Like ``_split_canonical_frame``: msgspec's typed decoder
    (``_UsualBody``: the map's three fields, declared in their sorted order) and its
    re-encoding equal to ``raw``, so it accepts only what ``codec.unpack`` accepts."""
    try:
        body = _decode_body(raw)
    except Exception:  # anything at all: the checks name it
        return None
    wraps = body.wraps
    if len(wraps) != recipients or _encode_plain(body) != raw:
        return None
    return body.nonce, wraps, body.ciphertext


class _UsualBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body's wire schema for msgspec's typed C decoder, fields in sorted order."""

    ciphertext: bytes
    nonce: Annotated[bytes, Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
    wraps: tuple[Annotated[bytes, Meta(min_length=WRAPPED_KEY_BYTES,
                                       max_length=WRAPPED_KEY_BYTES)], ...]


_decode_body = msgspec.msgpack.Decoder(_UsualBody).decode


def _recipients(value: object, limits: Limits) -> tuple[Recipient, ...]:
    if not isinstance(value, list):
        raise Malformed("recipients must be a list")
    if not value or len(value) > limits.max_recipients:
        raise LimitExceeded(f"recipients must number 1 to {limits.max_recipients}")
    out = []
    for item in value:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], bytes)
                or len(item[1]) != KEY_ID_BYTES):
            raise Malformed("each recipient must be [officer id, 16-byte key id]")
        out.append(build(Recipient, officer=check_officer_id(item[0], what="recipient"),
                         key_id=item[1]))
    return tuple(out)


def _urgency(value: object) -> Urgency | None:
    if value is None:
        return None
    try:
        return Urgency(value)
    except ValueError as exc:
        allowed = ", ".join(u.value for u in Urgency)
        raise Malformed(f"urgency must be one of {allowed}, got {value!r:.30}") from exc


def _consent(value: object) -> bytes | None:
    if value is not None and (not isinstance(value, bytes) or not value
                              or len(value) > MAX_CONSENT_BYTES):
        raise Malformed(f"consent must be 1-{MAX_CONSENT_BYTES} bytes or nil")
    return value


def _original(value: object, limits: Limits) -> bytes | None:
    if value is not None and (not isinstance(value, bytes) or not value
                              or len(value) > limits.max_header_bytes):
        raise Malformed(f"original must be 1-{limits.max_header_bytes} bytes or nil")
    return value


def _time(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 48:
        raise Malformed(f"{name} must be a positive integer of milliseconds")
    return value
