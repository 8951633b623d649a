"""Identifiers: time-ordered envelope ids, node ids, officer ids.

An envelope id is 128 bits: 48 bits of creation time in milliseconds, then 80 random bits,
so ids sort by creation time (outboxes and inboxes page by id) and never collide in
practice. Its text form is 26 characters of Crockford base32, easy to read out over a
phone line. The core never reads the clock or the random source for ids: both are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from liaison_net.errors import Malformed

ENVELOPE_ID_BYTES = 16
_TIME_BITS = 48
_RANDOM_BYTES = 10
MAX_ID_TIME_MS = (1 << _TIME_BITS) - 1

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}
#: Every 10-bit value's two characters: an id's text is 13 lookups, not 26 (several texts
#: are made per envelope at each node: answers, audit details, log events).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = tuple(range(120, -1, -10))

NODE_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MAX_OFFICER_ID_CHARS = 48


def new_envelope_id(now_ms: int, entropy: bytes) -> bytes:
    """Build an id from the creation time and 10 random bytes supplied by the caller."""
    if not 0 <= now_ms <= MAX_ID_TIME_MS:
        raise Malformed("id time out of range")
    if len(entropy) != _RANDOM_BYTES:
        raise Malformed(f"id entropy must be {_RANDOM_BYTES} bytes")
    return now_ms.to_bytes(6, "big") + entropy


def envelope_id_time_ms(envelope_id: bytes) -> int:
    check_envelope_id(envelope_id)
    return int.from_bytes(envelope_id[:6], "big")


def check_envelope_id(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != ENVELOPE_ID_BYTES:
        raise Malformed("envelope id must be 16 bytes")
    return value


def id_to_text(envelope_id: bytes) -> str:
    """26-character Crockford base32, sortable like the bytes."""
    check_envelope_id(envelope_id)
    n = int.from_bytes(envelope_id, "big")  # 128 bits: two leading zero bits make 130
    return "".join([_PAIRS[(n >> shift) & 1023] for shift in _PAIR_SHIFTS])


def id_from_text(text: str) -> bytes:
    """Parse an id typed by an officer; case and the usual confusable letters are forgiven."""
    if not isinstance(text, str) or len(text) != 26:
        raise Malformed("envelope id must be 26 base32 characters")
    norm = text.upper().replace("O", "0").replace("I", "1").replace("L", "1")
    n = 0
    for c in norm:
        if c not in _DECODE:
            raise Malformed(f"envelope id has an invalid character {c!r}")
        n = (n << 5) | _DECODE[c]
    if n >> 128:
        raise Malformed("envelope id out of range")
    return n.to_bytes(16, "big")


def check_node_id(value: object, *, what: str = "node id") -> str:
    if type(value) is str and value in _VALID_NODE_IDS:
        return value
    if not isinstance(value, str) or not NODE_ID_RE.fullmatch(value):
        raise Malformed(f"{what} must match {NODE_ID_RE.pattern}, got {value!r:.40}")
    _remember(_VALID_NODE_IDS, value)
    return value


def are_node_ids(values: Sequence[object]) -> bool:
    """True when ``check_node_id`` accepts every one of ``values``: for fast paths that
    hand anything else to the checks that name the fault."""
    if _STR.issuperset(map(type, values)) and _VALID_NODE_IDS.issuperset(values):
        return True  # all remembered, and exact str (as the memo's own test requires)
    for value in values:
        if not (type(value) is str and value in _VALID_NODE_IDS):
            try:
                check_node_id(value)
            except Malformed:
                return False
    return True


def check_officer_id(value: object, *, what: str = "officer id") -> str:
    """An officer (or role address such as a duty desk) is ``<node>/<handle>``."""
    if type(value) is str and value in _VALID_OFFICER_IDS:
        return value
    if not isinstance(value, str) or len(value) > MAX_OFFICER_ID_CHARS or value.count("/") != 1:
        raise Malformed(f"{what} must be '<node>/<handle>', got {value!r:.60}")
    node, handle = value.split("/")
    check_node_id(node, what=f"{what} node part")
    if not HANDLE_RE.fullmatch(handle):
        raise Malformed(f"{what} handle must match {HANDLE_RE.pattern}, got {handle!r:.40}")
    _remember(_VALID_OFFICER_IDS, value)
    return value


# Node and officer ids that passed their check (a pure fact about the string): every
# header names several (sender, recipients, the tag's owner and share_with), and a network
# has a few nodes and a directory of officers. Bounded: once full, the others are checked
# every time, as before.
_VALID_NODE_IDS: set[str] = set()
_VALID_OFFICER_IDS: set[str] = set()
_MAX_VALID_IDS = 4096
_STR = frozenset({str})


def _remember(valid: set[str], value: str) -> None:
    if len(valid) < _MAX_VALID_IDS and type(value) is str:  # not a subclass with its own ==
        valid.add(value)


def node_of(officer_id: str) -> str:
    return check_officer_id(officer_id).split("/")[0]


def node_principal(node_id: str) -> str:
    """The sender id a node uses for envelopes it signs itself (notices, evidence):
    ``<node>/node``, a handle no officer can be given (enrolment refuses it)."""
    return f"{check_node_id(node_id)}/{NODE_HANDLE}"


NODE_HANDLE = "node"
