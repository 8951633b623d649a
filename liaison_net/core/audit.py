"""The audit chain: every decision one entry, each entry hashing the one before it.

An entry's hash covers its sequence number, time, event, envelope id, actor, detail and
the previous entry's hash, so editing, deleting or reordering any row breaks every hash
after it; ``first_broken`` names the first entry that no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec

GENESIS = b"\x00" * 32


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: int  # ms
    event: str  # e.g. envelope.accepted, envelope.refused, envelope.relayed, key.rotated
    envelope_id: bytes | None
    actor: str  # the officer or node on whose behalf the decision was taken
    detail: str  # JSON text: reason codes, peers; never content or keys
    prev: bytes
    hash: bytes


#: Audit events stored as a short code instead of their name (bytes on disk, issue 16:
#: ``envelope.accepted`` is 17 bytes in every row, its code 1 or 2). The hash still covers
#: the name, so the code is only how the row spells it. Append only: a code names its event
#: forever, and migration 19 wrote these into the ``audit_events`` table (a later one adds
#: new codes there too). Codes are digits and no event name is, so an event not listed
#: here is simply stored by its name, and a row from before migration 19 reads the same.
EVENT_CODES: dict[str, str] = {
    "envelope.accepted": "1",
    "envelope.relayed": "2",
    "envelope.delivered_to_inbox": "3",
    "evidence.issued": "4",
    "notice.issued": "5",
    "envelope.refused": "6",
    "envelope.refused_by_peer": "7",
    "envelope.expired": "8",
    "envelope.purged": "9",
    "envelope.consulted": "10",
    "envelope.acknowledged": "11",
    "envelope.held": "12",
    "envelope.approved": "13",
    "envelope.recalled": "14",
    "envelope.rejected": "15",
    "signal.matched": "16",
    "request.answered": "17",
    "login.failed": "18",
}
EVENT_NAMES: dict[str, str] = {code: name for name, code in EVENT_CODES.items()}


def stored_event(name: str) -> str:
    """How the audit table spells ``name``: its code, or the name itself. A name that
    looks like a code would read back as another event: refused (a bug in the caller)."""
    code = EVENT_CODES.get(name)
    if code is not None:
        return code
    if name.isdigit():
        raise ValueError(f"an audit event name may not be digits alone: {name!r}")
    return name


def event_name(stored: str) -> str:
    """The event a row's ``event`` column names (a code, or a name as stored before)."""
    return EVENT_NAMES.get(stored, stored)


#: The most frequent pieces of an entry's detail (JSON keys, and a key with its usual
#: value), each stored as one control character: the ``i``-th as ``chr(i + 1)``. A JSON
#: text holds no control character (``json.dumps`` escapes them), so the stored form reads
#: back to exactly the text the hash covers. Append only (at most 30): a code names its
#: piece forever. Ordered so that a key with its usual value goes before the key alone.
DETAIL_TOKENS: tuple[str, ...] = (
    '"handling":"H0"', '"handling":', '"inboxes":[]', '"inboxes":', '"layer":"origin"',
    '"layer":"destination"', '"layer":', '"purpose":"relayed evidence"', '"purpose":',
    '"recipients":', '"tlp":"AMBER"', '"tlp":"GREEN"', '"tlp":"RED"', '"tlp":"CLEAR"',
    '"tlp":', '"to":', '"peer":', '"kind":"accepted"', '"kind":"relayed"', '"kind":',
    '"ref":', '"code":',
)
#: Starts a stored detail that uses the codes (two of them: a text stored as it is that
#: happened to start with one).
DETAIL_MARK = "\x1f"
_DETAIL_CODES = tuple((token, chr(i + 1)) for i, token in enumerate(DETAIL_TOKENS))
_DETAIL_READ = tuple((code, token) for token, code in _DETAIL_CODES)
_CONTROL = re.compile("[\x00-\x1f]")


def stored_detail(text: str) -> str:
    """How the audit table stores ``text``: its pieces by their codes after the mark, or,
    if that saves nothing or ``text`` holds a control character already, as it is."""
    if _CONTROL.search(text):
        return DETAIL_MARK * 2 + text if text.startswith(DETAIL_MARK) else text
    coded = text
    for token, code in _DETAIL_CODES:
        if token in coded:
            coded = coded.replace(token, code)
    return DETAIL_MARK + coded if len(coded) + 1 < len(text) else text


def detail_text(stored: str) -> str:
    """The detail a row's ``detail`` column holds (``stored_detail`` undone)."""
    if not stored.startswith(DETAIL_MARK):
        return stored
    if stored.startswith(DETAIL_MARK * 2):
        return stored[2:]
    text = stored[1:]
    for code, token in _DETAIL_READ:  # a test per code is cheaper than a translate map
        if code in text:
            text = text.replace(code, token)
    return text


# What ``json.dumps(fields, sort_keys=True, separators=(",", ":"))`` builds on every call
# (its arguments are not the defaults, so it makes a new encoder each time), made once.
_DETAIL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def detail(**fields: Any) -> str:
    """An entry's detail as compact, sorted JSON: reason codes, peers, key ids, counts;
    never content, keys or passphrases."""
    return _DETAIL_JSON.encode(fields)


def entry_hash(prev: bytes, seq: int, at: int, event: str, envelope_id: bytes | None,
               actor: str, detail: str) -> bytes:
    body = codec.pack([seq, at, event, envelope_id, actor, detail])
    return hashlib.sha256(b"liaison-net/audit/v1\x00" + prev + body).digest()


def first_broken(entries: Iterable[AuditEntry]) -> int | None:
    """The seq of the first entry whose link or hash is wrong, or None if the chain holds."""
    prev = GENESIS
    expected_seq = None
    for e in entries:
        if expected_seq is not None and e.seq != expected_seq:
            return e.seq
        if e.prev != prev or e.hash != entry_hash(prev, e.seq, e.at, e.event, e.envelope_id,
                                                  e.actor, e.detail):
            return e.seq
        prev = e.hash
        expected_seq = e.seq + 1
    return None
