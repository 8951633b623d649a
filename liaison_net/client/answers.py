"""What the home node answers, as typed records, and the checks that build them.

Kept apart from ``client.session`` so that the HTTP session and the websocket stream
(``client.stream``) parse answers the same way, in one place: an answer that does not
have the documented shape becomes ``Malformed``, an error answer becomes the errors.py
class with its stable code, and server text is cleaned before it reaches a terminal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from liaison_net import errors
from liaison_net.core.envelope import Precedence
from liaison_net.core.ids import id_from_text, id_to_text

T = TypeVar("T")

_MAX_DETAIL_CHARS = 500
_CODE = re.compile(r"[a-z][a-z0-9_]{0,40}(?:\.[a-z][a-z0-9_]{0,40})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BY_CODE: dict[str, type[errors.LiaisonError]] = {
    cls.code: cls for cls in errors.all_error_classes() if cls is not errors.LiaisonError
}


@dataclass(frozen=True)
class SubmitResult:
    id: str
    status: str  # "accepted" or "duplicate"
    held: bool = False  # four-eyes: accepted, waiting for a second officer's approval


@dataclass(frozen=True)
class InboxEntry:
    seq: int
    id: str
    sender: str
    kind: str
    precedence: str
    created: int  # ms
    relayed: int  # ms
    acked: int | None  # ms, or None while unacknowledged
    retain_until: int | None = None  # ms; the tag's retention (None from an older node)
    purged: int | None = None  # ms: the content was purged at retain_until (retention)
    tag: dict[str, Any] | None = None  # a purged entry's tag, from its signed skeleton


@dataclass(frozen=True)
class InboxPage:
    items: list[InboxEntry]
    next: int


@dataclass(frozen=True)
class HopStatus:
    state: str
    reason: str | None


@dataclass(frozen=True)
class LocalStatus:
    officer: str
    relayed: int
    acked: int | None


@dataclass(frozen=True)
class EnvelopeStatus:
    id: str
    hops: dict[str, HopStatus]
    local: list[LocalStatus]
    hold: HoldStatus | None = None  # four-eyes: held, approved, rejected or expired


@dataclass(frozen=True)
class HoldStatus:
    """The origin's word on a four-eyes hold (the approval itself is verified apart)."""

    state: str
    by: str | None
    decided: str | None
    until: str | None
    reason: str | None

    def describe(self) -> str:
        """In words: "held ... until", "approved by", "rejected by", "expired"."""
        if self.state == "held":
            return f"held: waiting for a second officer's approval until {self.until}"
        if self.state == "approved":
            return f"approved by {self.by} at {self.decided}"
        if self.state == "rejected":
            return f"rejected by {self.by} at {self.decided}: {self.reason or ''}"
        return f"{self.state} at {self.decided}: {self.reason or ''} (never sent)"


def error_from_answer(status: int, body: bytes) -> errors.LiaisonError:
    """The typed error for a 4xx/5xx answer, by its stable code, else by its status."""
    code, detail = "", ""
    try:
        value = json.loads(body)
        if isinstance(value, dict):
            raw_code, raw_detail = value.get("error"), value.get("detail")
            code = raw_code if isinstance(raw_code, str) else ""
            detail = raw_detail if isinstance(raw_detail, str) else ""
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    detail = clean(detail) or f"the node answered HTTP {status}"
    if not _CODE.fullmatch(code or ""):
        code = ""
    if code.startswith("policy."):
        return errors.PolicyRefused(detail, code=code)
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(detail)
    if status == 503:
        return errors.Unavailable(detail)
    fallback: type[errors.LiaisonError] = errors.Refused if status < 500 else errors.NodeFault
    return fallback(detail, code=code or None)


def batch_results(body: dict[str, Any], sent: int) -> list[SubmitResult | errors.LiaisonError]:
    """A batch submit's answer: one result per envelope sent, in order; a refused one as
    its typed error (by its code, as for a single submit)."""
    results = body.get("results")
    if not isinstance(results, list) or len(results) != sent:
        raise errors.Malformed(f"node answered a batch of {sent} without one result each")
    out: list[SubmitResult | errors.LiaisonError] = []
    for item in results:
        if not isinstance(item, dict):
            raise errors.Malformed("node answered a batch result that is not a map")
        status = item.get("status")
        if status in ("accepted", "duplicate"):
            out.append(SubmitResult(check_id(field(item, "id", str, "batch submit")),
                                    str(status)))
        elif status == "refused":
            out.append(error_from_answer(400, json.dumps(
                {"error": item.get("error"), "detail": item.get("detail")}).encode()))
        else:
            raise errors.Malformed(f"node answered a batch result with status "
                                   f"{clean(str(status))!r:.40}")
    return out


def clean(text: str) -> str:
    """Server text shown on the officer's terminal: no control characters, bounded."""
    return _CONTROL.sub("?", text)[:_MAX_DETAIL_CHARS]


def check_id(envelope_id: str) -> str:
    """Canonical text of an id typed by the officer (before it goes into a URL path)."""
    return id_to_text(id_from_text(envelope_id.strip()))


# --- shape checks on JSON answers ------------------------------------------------------------


def json_map(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise errors.Malformed(f"node answered {what} with invalid JSON") from None
    if not isinstance(value, dict):
        raise errors.Malformed(f"node answered {what} with JSON that is not an object")
    return value


def field(body: dict[str, Any], key: str, kind: type[T], what: str) -> T:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise errors.Malformed(f"node answered {what} without a valid {key!r}")
    return value


def count(value: object, what: str) -> int:
    """A non-negative integer (a seq, a time in ms), never a bool."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.Malformed(f"node sent an invalid {what}")
    return value


def opt_count(value: object, what: str) -> int | None:
    return None if value is None else count(value, what)


def inbox_entry(item: object) -> InboxEntry:
    if not isinstance(item, dict):
        raise errors.Malformed("node sent an inbox item that is not an object")
    precedence = item.get("precedence")
    if isinstance(precedence, int) and not isinstance(precedence, bool):
        try:
            precedence = Precedence(precedence).label
        except ValueError:
            raise errors.Malformed("node sent an unknown precedence") from None
    if not isinstance(precedence, str):
        raise errors.Malformed("node sent an inbox item without precedence")
    return InboxEntry(
        seq=count(item.get("seq"), "inbox seq"),
        id=check_id(field(item, "id", str, "inbox item")),
        sender=clean(field(item, "sender", str, "inbox item")),
        kind=clean(field(item, "kind", str, "inbox item")),
        precedence=clean(precedence),
        created=count(item.get("created"), "inbox created"),
        relayed=count(item.get("relayed"), "inbox relayed"),
        acked=opt_count(item.get("acked"), "inbox acked"),
        retain_until=opt_count(item.get("retain_until"), "inbox retain_until"),
        purged=opt_count(item.get("purged"), "inbox purged"),
        tag=_purged_tag(item.get("tag")),
    )


def _purged_tag(value: object) -> dict[str, Any] | None:
    """A purged entry's tag as the node shows it: only for display, so only plain values."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 32:
        raise errors.Malformed("node sent an inbox tag that is not an object")
    return {str(k): v for k, v in value.items()}


def envelope_status(body: dict[str, Any]) -> EnvelopeStatus:
    """An ``/envelopes/{id}/status`` answer: the origin's hops and the local inboxes."""
    hops_raw = body.get("hops")
    local_raw = body.get("local")
    if not isinstance(hops_raw, dict) or not isinstance(local_raw, list):
        raise errors.Malformed("node answered status without hops map and local list")
    hops = {}
    for node, hop in hops_raw.items():
        if not isinstance(hop, dict):
            raise errors.Malformed("node answered status with a malformed hop")
        reason = hop.get("reason")
        hops[clean(node)] = HopStatus(clean(field(hop, "state", str, "status hop")),
                                      clean(reason) if isinstance(reason, str) else None)
    local = []
    for item in local_raw:
        if not isinstance(item, dict):
            raise errors.Malformed("node answered status with a malformed local entry")
        local.append(LocalStatus(clean(field(item, "officer", str, "status local")),
                                 count(item.get("relayed"), "status relayed"),
                                 opt_count(item.get("acked"), "status acked")))
    hold_raw = body.get("hold")
    hold = None
    if hold_raw is not None:
        if not isinstance(hold_raw, dict):
            raise errors.Malformed("node answered status with a malformed hold")

        def text(key: str) -> str | None:
            value = hold_raw.get(key)
            return clean(value)[:500] if isinstance(value, str) else None

        hold = HoldStatus(clean(field(hold_raw, "state", str, "status hold")), text("by"),
                          text("decided"), text("until"), text("reason"))
    return EnvelopeStatus(check_id(field(body, "id", str, "status")), hops, local, hold)
