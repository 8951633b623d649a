"""What an audit entry says for Directive (EU) 2016/680 Art. 25, sans I/O.

Art. 25 asks for logs of collection, alteration, consultation, disclosure (including
transfers), combination and erasure; the logs of consultation and disclosure must show the
justification, the date and time, who consulted or disclosed, and the recipients. The chain
(``core.audit``) already has the time, the actor and the envelope; this module adds what the
detail must carry (the tag's purpose and handling as the justification, the officers an
envelope reaches, an officer's own reason where one is given) and tells the data protection
officer's export which Art. 25 categories an entry stands for. Never content, subjects or
keys: only what the envelope's clear, signed header already says.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from liaison_net.core.envelope import Header
from liaison_net.core.ids import id_to_text
from liaison_net.errors import Malformed

COLLECTION = "collection"
CONSULTATION = "consultation"
DISCLOSURE = "disclosure"
COMBINATION = "combination"
ERASURE = "erasure"
LOGIN = "login"  # failed logins: not an Art. 25 category, asked for by the same audit

CATEGORIES = (COLLECTION, CONSULTATION, DISCLOSURE, COMBINATION, ERASURE, LOGIN)

#: An officer's reason for a consultation, as audited: one line, bounded.
MAX_REASON_CHARS = 200

#: Events that stand for one category whatever their detail says.
_BY_EVENT: dict[str, tuple[str, ...]] = {
    "envelope.consulted": (CONSULTATION,),
    "envelope.relayed": (DISCLOSURE,),  # a transfer to the peer node named in the detail
    "envelope.purged": (ERASURE,),
    "signal.matched": (COMBINATION,),
    "pseudonym.evaluated": (COMBINATION,),
    "login.failed": (LOGIN,),
}


#: Events whose entries may stand for each category (``categories`` decides per entry).
_EVENTS_OF: dict[str, tuple[str, ...]] = {
    COLLECTION: ("envelope.accepted", "envelope.delivered_to_inbox"),
    CONSULTATION: ("envelope.consulted",),
    DISCLOSURE: ("envelope.accepted", "envelope.delivered_to_inbox", "envelope.relayed"),
    COMBINATION: ("envelope.accepted", "envelope.delivered_to_inbox", "signal.matched",
                  "pseudonym.evaluated"),
    ERASURE: ("envelope.purged",),
    LOGIN: ("login.failed",),
}


def events_of(wanted: frozenset[str]) -> tuple[str, ...]:
    """The events to read for entries of the ``wanted`` categories (() for no filter)."""
    return tuple(sorted({event for category in wanted for event in _EVENTS_OF[category]}))


def justification(header: Header) -> dict[str, Any]:
    """The justification the owner gave the information: purpose, handling code, TLP."""
    tag = header.tag
    return {"purpose": tag.purpose, "handling": tag.handling.value, "tlp": tag.tlp.value}


def reception(header: Header, inboxes: list[str], *, forward: bool,
              recipients: bool = False) -> dict[str, Any]:
    """Detail fields of an accept (origin) or a delivery into inboxes (destination): the
    justification, the officers whose inboxes here now hold it (a disclosure to each),
    with ``recipients`` every officer it is addressed to (the origin's record of the
    transfers it will make), and for a forward the original it passes on (a combination
    with what the forwarder adds)."""
    fields = justification(header)
    fields["inboxes"] = sorted(inboxes)
    if recipients:
        fields["recipients"] = sorted(r.officer for r in header.recipients)
    if forward and header.ref is not None:
        fields["forward_of"] = id_to_text(header.ref)
        fields["consent"] = header.consent is not None
    return fields


def check_reason(text: str) -> str:
    """An officer's reason as it may be audited: 1 to ``MAX_REASON_CHARS`` printable
    characters on one line (no control or format characters that could forge an export
    line or hide text)."""
    reason = text.strip()
    if not reason:
        raise Malformed("the reason is empty")
    if len(reason) > MAX_REASON_CHARS:
        raise Malformed(f"the reason is longer than {MAX_REASON_CHARS} characters")
    if any(unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")
           for c in reason):
        raise Malformed("the reason holds control characters or line breaks")
    return reason


def categories(event: str, detail: str) -> tuple[str, ...]:
    """The Art. 25 categories an audit entry stands for ('' detail parts ignored): an accept
    is a collection, and a disclosure when it puts the envelope into inboxes here, and a
    combination when it is a forward. Entries of other events (keys, refusals, peers)
    stand for none."""
    fixed = _BY_EVENT.get(event)
    if fixed is not None:
        return fixed
    if event not in ("envelope.accepted", "envelope.delivered_to_inbox"):
        return ()
    try:
        fields = json.loads(detail)
    except ValueError:
        fields = {}
    if not isinstance(fields, dict):
        fields = {}
    out = [COLLECTION]
    if fields.get("inboxes") or event == "envelope.delivered_to_inbox":
        out.append(DISCLOSURE)
    if fields.get("forward_of"):
        out.append(COMBINATION)
    return tuple(out)
