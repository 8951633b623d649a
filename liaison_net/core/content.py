"""The plaintext inside an envelope: what the sender wrote, before encryption.

Wire form (canonical msgpack, encrypted as the envelope's content)::

    {"v": 1, "subject": str, "text": str, "attachments": [{"name", "media_type", "data"}]}

Only the recipients ever decode it, on their own machines, after the envelope's signature
has verified, so a content error is the sender's client's fault. Decoding is as strict as
for the header (exact fields, types, sizes, canonical bytes), because what decodes here
ends up on an officer's terminal: control characters that could move the cursor or rewrite
earlier lines are refused in every field (tab and newline are allowed in the text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.errors import LimitExceeded, Malformed

VERSION = 1
MAX_SUBJECT_CHARS = 200
MAX_ATTACHMENTS = 16
MAX_ATTACHMENT_NAME_CHARS = 255
MAX_MEDIA_TYPE_CHARS = 127
# Room for the map keys and msgpack lengths around the text and attachments.
_OVERHEAD_BYTES = 4096
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
# C0 controls, DEL and C1 controls: what a terminal may act on instead of showing.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_TAB_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FIELDS = {"v", "subject", "text", "attachments"}
_ATTACHMENT_FIELDS = {"name", "media_type", "data"}


@dataclass(frozen=True)
class Attachment:
    name: str  # a file name as the sender gave it, never a path the reader should trust
    media_type: str  # e.g. application/pdf
    data: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "media_type": self.media_type, "data": self.data}


@dataclass(frozen=True)
class Content:
    subject: str
    text: str
    attachments: tuple[Attachment, ...] = ()

    def validate(self, limits: Limits = DEFAULT_LIMITS) -> Content:
        """Check every field; return self for chaining."""
        _check_str("content subject", self.subject, MAX_SUBJECT_CHARS, allow_newlines=False)
        if not self.subject.strip():
            raise Malformed("content subject must not be empty")
        _check_str("content text", self.text, limits.max_body_bytes, allow_newlines=True)
        if not isinstance(self.attachments, tuple):
            raise Malformed("content attachments must be a tuple")
        if len(self.attachments) > MAX_ATTACHMENTS:
            raise LimitExceeded(f"content has more than {MAX_ATTACHMENTS} attachments")
        for a in self.attachments:
            if not isinstance(a, Attachment):
                raise Malformed("content attachments must be Attachment objects")
            _check_str("attachment name", a.name, MAX_ATTACHMENT_NAME_CHARS,
                       allow_newlines=False)
            if not a.name.strip() or "/" in a.name or "\\" in a.name:
                raise Malformed("attachment name must be a plain, non-empty file name")
            if (not isinstance(a.media_type, str) or len(a.media_type) > MAX_MEDIA_TYPE_CHARS
                    or not _MEDIA_TYPE.fullmatch(a.media_type)):
                raise Malformed(f"attachment media type {a.media_type!r:.40} is not type/subtype")
            if not isinstance(a.data, bytes):
                raise Malformed("attachment data must be bytes")
        return self

    def to_wire(self) -> dict[str, Any]:
        return {"v": VERSION, "subject": self.subject, "text": self.text,
                "attachments": [a.to_wire() for a in self.attachments]}


def encode(content: Content, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Canonical bytes of valid content, no larger than an envelope may carry."""
    raw = codec.pack(content.validate(limits).to_wire())
    if len(raw) > limits.max_body_bytes:
        raise LimitExceeded(f"content is {len(raw)} bytes, limit {limits.max_body_bytes}")
    return raw


def decode(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Content:
    """Strictly decode content bytes (decrypted from an envelope whose signature verified)."""
    d = codec.exact_map("content", codec.unpack(raw, what="content",
                                                max_bytes=limits.max_body_bytes), _FIELDS)
    if d["v"] != VERSION or isinstance(d["v"], bool):
        raise Malformed(f"unsupported content version {d['v']!r:.20}")
    attachments = d["attachments"]
    if not isinstance(attachments, list):
        raise Malformed("content attachments must be a list")
    parsed = []
    for item in attachments:
        a = codec.exact_map("attachment", item, _ATTACHMENT_FIELDS)
        parsed.append(Attachment(name=a["name"], media_type=a["media_type"], data=a["data"]))
    return Content(subject=d["subject"], text=d["text"],
                   attachments=tuple(parsed)).validate(limits)


def _check_str(what: str, value: object, max_chars: int, *, allow_newlines: bool) -> None:
    if not isinstance(value, str):
        raise Malformed(f"{what} must be a string")
    if len(value) > max_chars:
        raise LimitExceeded(f"{what} is longer than {max_chars} characters")
    found = (_CONTROL_BUT_TAB_NEWLINE if allow_newlines else _CONTROL).search(value)
    if found:
        raise Malformed(f"{what} contains the control character U+{ord(found.group()):04X}")
