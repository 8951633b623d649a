"""Radicalisation early-warning signals: the controlled vocabulary, the payload, the annex.

A signal travels as an envelope of kind ``signal`` to the duty desks (``<node>/desk``) of
every node its tag allows. Two parts:

* the **payload**, encrypted like any content: category, severity, confidence, region,
  validity window, free text, attachments (``SignalPayload``, versioned, strict);
* the **annex**, in the signed but unencrypted header (``SignalAnnex``): only what nodes
  need to act without reading the content: the severity (it sets the acknowledgement
  deadline) and the subject pseudonyms (OPRF outputs, see ``pseudonym``) for hit/no-hit
  matching. No identifier of a person is ever in either in clear.

Definitions of each category are in docs/signals.md; a test keeps the two in step.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from liaison_net.core import codec
from liaison_net.core.limits import DAY_MS, HOUR_MS, MINUTE_MS
from liaison_net.errors import LimitExceeded, Malformed

PAYLOAD_VERSION = 1
DESK_HANDLE = "desk"
BACKUP_DESK_HANDLE = "desk-backup"
MAX_TEXT_CHARS = 4000
MAX_ATTACHMENTS = 4
MAX_ATTACHMENT_BYTES = 256 * 1024
MAX_PSEUDONYMS = 2  # the current and, during a key rotation, the previous network key
PSEUDONYM_BYTES = 32
KEY_ID_BYTES = 16
REGION_RE = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
MAX_VALIDITY_MS = 365 * DAY_MS


class Category(enum.Enum):
    """Indicators of possible violent radicalisation, as front-line police observe them."""

    PROPAGANDA = "violent-extremist-propaganda"
    INTENT = "expressed-intent-to-use-violence"
    NETWORK = "contact-with-extremist-network"
    TRAVEL = "travel-to-conflict-zone"
    WEAPONS = "interest-in-weapons-or-explosives"
    BEHAVIOUR = "marked-behavioural-change"
    RECRUITMENT = "recruitment-activity"
    ONLINE = "online-radicalisation"
    FINANCING = "financing-of-extremism"
    TARGETING = "interest-in-targets"


class Severity(enum.IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, value: object) -> Severity:
        # ASCII only: 'h\u0131gh'.upper() is 'HIGH' too (tests/fuzz regressions).
        if (isinstance(value, str) and value.isascii() and value.islower()
                and value.upper() in cls.__members__):
            return cls[value.upper()]
        raise Malformed(f"severity must be one of {', '.join(s.label for s in cls)}, "
                        f"got {value!r:.20}")


class Confidence(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


#: How long a desk has to acknowledge, by severity, unless a node's config says otherwise.
DEFAULT_ACK_DEADLINE_MS: dict[Severity, int] = {
    Severity.LOW: 3 * DAY_MS,
    Severity.MEDIUM: 8 * HOUR_MS,
    Severity.HIGH: HOUR_MS,
    Severity.CRITICAL: 15 * MINUTE_MS,
}


@dataclass(frozen=True)
class SignalConfig:
    ack_deadline_ms: dict[Severity, int]
    escalation_check_s: float = 1.0
    evaluations_per_hour: int = 30

    @classmethod
    def default(cls) -> SignalConfig:
        return cls(dict(DEFAULT_ACK_DEADLINE_MS))


@dataclass(frozen=True)
class Pseudonym:
    key_id: bytes  # which network pseudonym key evaluated it
    value: bytes


@dataclass(frozen=True)
class SignalAnnex:
    """The header part of a signal: what nodes act on without reading the content."""

    severity: Severity
    pseudonyms: tuple[Pseudonym, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"severity": self.severity.label,
                "pseudonyms": [[p.key_id, p.value] for p in self.pseudonyms]}

    @classmethod
    def from_wire(cls, value: object) -> SignalAnnex:
        d = codec.exact_map("signal annex", value, {"severity", "pseudonyms"})
        raw = d["pseudonyms"]
        if not isinstance(raw, list) or len(raw) > MAX_PSEUDONYMS:
            raise Malformed(f"signal pseudonyms must be a list of at most {MAX_PSEUDONYMS}")
        pseudonyms = []
        for item in raw:
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes)
                    or len(item[0]) != KEY_ID_BYTES or not isinstance(item[1], bytes)
                    or len(item[1]) != PSEUDONYM_BYTES):
                raise Malformed("each pseudonym must be [16-byte key id, 32-byte value]")
            pseudonyms.append(Pseudonym(item[0], item[1]))
        if len({p.key_id for p in pseudonyms}) != len(pseudonyms):
            raise Malformed("at most one pseudonym per key")
        return cls(Severity.from_label(d["severity"]), tuple(pseudonyms))


@dataclass(frozen=True)
class Attachment:
    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class SignalPayload:
    """The encrypted content of a signal."""

    category: Category
    severity: Severity
    confidence: Confidence
    region: str  # ISO 3166 country or subdivision, e.g. NL-LI, BE-VLI, LU
    valid_from: int  # ms
    valid_until: int  # ms
    text: str
    attachments: tuple[Attachment, ...] = field(default=())

    def validate(self) -> SignalPayload:
        if not REGION_RE.fullmatch(self.region):
            raise Malformed("region must be an ISO 3166 code such as NL-LI, BE-VLI or LU")
        if self.valid_until <= self.valid_from:
            raise Malformed("signal validity window is empty")
        if self.valid_until - self.valid_from > MAX_VALIDITY_MS:
            raise LimitExceeded("signal validity exceeds one year")
        if not self.text.strip():
            raise Malformed("signal text must not be empty")
        if len(self.text) > MAX_TEXT_CHARS:
            raise LimitExceeded(f"signal text exceeds {MAX_TEXT_CHARS} characters")
        if len(self.attachments) > MAX_ATTACHMENTS:
            raise LimitExceeded(f"at most {MAX_ATTACHMENTS} attachments")
        for a in self.attachments:
            if not 0 < len(a.name) <= 128 or "/" in a.name or not a.media_type.count("/") == 1:
                raise Malformed("attachment needs a plain file name and a media type")
            if len(a.data) > MAX_ATTACHMENT_BYTES:
                raise LimitExceeded(f"attachment {a.name} exceeds {MAX_ATTACHMENT_BYTES} bytes")
        return self

    def encode(self) -> bytes:
        self.validate()
        return codec.pack({
            "v": PAYLOAD_VERSION, "category": self.category.value,
            "severity": self.severity.label, "confidence": self.confidence.value,
            "region": self.region, "valid_from": self.valid_from,
            "valid_until": self.valid_until, "text": self.text,
            "attachments": [[a.name, a.media_type, a.data] for a in self.attachments],
        })

    @classmethod
    def decode(cls, raw: bytes) -> SignalPayload:
        d = codec.exact_map("signal", codec.unpack(raw, what="signal", max_bytes=2 * 1024 * 1024),
                            {"v", "category", "severity", "confidence", "region", "valid_from",
                             "valid_until", "text", "attachments"})
        if d["v"] != PAYLOAD_VERSION or isinstance(d["v"], bool):
            raise Malformed(f"unsupported signal version {d['v']!r:.10}")
        try:
            category = Category(d["category"])
            confidence = Confidence(d["confidence"])
        except ValueError as exc:
            raise Malformed(f"signal {exc}") from exc
        for key in ("valid_from", "valid_until"):
            if not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] < 0:
                raise Malformed(f"signal {key} must be milliseconds")
        for key in ("region", "text"):
            if not isinstance(d[key], str):
                raise Malformed(f"signal {key} must be text")
        attachments = d["attachments"]
        if not isinstance(attachments, list):
            raise Malformed("signal attachments must be a list")
        parsed = []
        for a in attachments:
            if (not isinstance(a, list) or len(a) != 3 or not isinstance(a[0], str)
                    or not isinstance(a[1], str) or not isinstance(a[2], bytes)):
                raise Malformed("each attachment must be [name, media type, bytes]")
            parsed.append(Attachment(a[0], a[1], a[2]))
        return cls(category, Severity.from_label(d["severity"]), confidence, d["region"],
                   d["valid_from"], d["valid_until"], d["text"], tuple(parsed)).validate()


def desk_of(node: str) -> str:
    return f"{node}/{DESK_HANDLE}"


def backup_desk_of(node: str) -> str:
    return f"{node}/{BACKUP_DESK_HANDLE}"


#: Node notices about signals (content of kind-``notice`` envelopes signed by a node).
NOTICE_ACK = "signal-ack"
NOTICE_ESCALATION = "signal-escalation"
NOTICE_MATCH = "signal-match"
