"""Node-to-node messages: transactions of envelopes, directory pushes, and their answers.

All bodies are canonical msgpack. The transaction id lets a receiver log retries; safety
against replays does not depend on it, because every envelope is deduplicated by its id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from liaison_net.core import codec
from liaison_net.core.approval import MAX_APPROVAL_BYTES
from liaison_net.core.evidence_batch import MAX_BATCH_IDS
from liaison_net.core.ids import ENVELOPE_ID_BYTES
from liaison_net.errors import LimitExceeded, Malformed, Refused, all_error_classes

TRANSACTION_PATH = "/fed/v1/transactions"
DIRECTORY_PATH = "/fed/v1/directory"
REVOCATIONS_PATH = "/fed/v1/revocations"
MAX_TRANSACTION_ENVELOPES = 1024
MAX_DIRECTORY_CARDS = 500
MAX_REVOCATIONS = 100
MAX_KEY_CHANGES = 16  # the pushing node's latest key changes (services/key_changes.py)

TRANSACTION_FIELDS = {"origin", "txn", "envelopes"}
DIRECTORY_FIELDS = {"origin", "node_cert", "cards"}  # and, optional, "key_changes"
REVOCATION_FIELDS = {"origin", "statements"}

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REFUSED = "refused"

#: Refusals a sender should retry rather than record as final: the receiver may simply not
#: know yet what the sender knows (a card still on its way, a storage hiccup, a full disk).
RETRYABLE_CODES = frozenset({"unknown_key", "not_found", "unavailable", "storage_full",
                             "keys_changed",
                             "node_fault", "rate_limited"})
#: Codes a peer may give for one envelope: our error codes, intake's own, and
#: ``policy.<rule>``. Anything else is a malformed answer, not a refusal to record.
KNOWN_CODES = frozenset({cls.code for cls in all_error_classes()} | {"not_for_this_node"})
_POLICY_CODE = re.compile(r"policy\.[a-z][a-z0-9_]{0,40}")
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_DETAIL = 200  # characters of a peer's reason kept
MAX_DETAIL_IN = 1000  # a longer reason makes the answer malformed


@dataclass(frozen=True)
class Transaction:
    """A peer's batch of envelopes, checked for shape only: each envelope is verified later,
    on its own, before any of its bytes are decoded."""

    origin: str
    txn: bytes
    envelopes: list[bytes]
    #: Optional: batch evidence among ``envelopes`` (by its id) -> the envelopes it covers.
    #: Only a hint for the receiver's index: nothing is believed from it (see
    #: ``EnvelopeStore.accept``), since the evidence is sealed for the sender alone.
    covers: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    #: Optional: the four-eyes approval that released an envelope among ``envelopes`` (by
    #: its id), carried beside it (core/approval.py); the receiver verifies each.
    approvals: dict[bytes, bytes] = field(default_factory=dict)


_Items = Meta(max_length=codec.MAX_CONTAINER_ITEMS)  # codec.unpack's bound on a container


class _UsualTransaction(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True,
                        kw_only=True):
    """A transaction body's wire schema for msgspec's typed C decoder: the fields in
    canonical (sorted) order, the optional ones omitted when absent, every leaf a byte
    string or the origin's str (so no float can hide in it), no container longer than
    ``codec.unpack`` allows. What the leaves mean is checked as before, in Python."""

    approvals: Annotated[list[Annotated[list[bytes], _Items]], _Items] | UnsetType = UNSET
    covers: Annotated[list[Annotated[list[bytes | Annotated[list[bytes], _Items]], _Items]],
                      _Items] | UnsetType = UNSET
    envelopes: Annotated[list[bytes], _Items]
    origin: str
    txn: bytes


_decode_usual = msgspec.msgpack.Decoder(_UsualTransaction).decode
_encode_usual = msgspec.msgpack.Encoder().encode


def _usual_transaction(body: bytes, max_bytes: int) -> dict[str, Any] | None:
    """The body as ``codec.unpack`` would return it, when it has the usual shape and is
    canonical; else None (then ``codec.unpack`` decides and names the fault). A body of
    envelopes is ciphertext, which is full of bytes that could open a container, so
    ``codec.unpack`` always takes its slow path on it (a walk and a re-encoding in Python).
    Here msgspec's typed decoder checks the field set and the leaf types in C, and its
    re-encoding must give ``body`` back byte for byte (keys in the struct's field order,
    which is the sorted one; a repeated key shortens it; its encoder writes the shortest
    forms as ``codec.pack`` does: tests/core/test_msgspec_canonical.py), so it accepts
    nothing ``codec.unpack`` refuses and returns the same value
    (tests/federation/test_transaction_fastpath.py)."""
    if type(body) is not bytes or len(body) > max_bytes:
        return None
    try:
        txn = _decode_usual(body)
        if _encode_usual(txn) != body:
            return None
    except Exception:  # anything at all (DecodeError, ValidationError): the checks name it
        return None
    value: dict[str, Any] = {"envelopes": txn.envelopes, "origin": txn.origin, "txn": txn.txn}
    if txn.approvals is not UNSET:
        value["approvals"] = txn.approvals
    if txn.covers is not UNSET:
        value["covers"] = txn.covers
    return value


def decode_transaction(body: bytes, *, max_bytes: int) -> Transaction:
    """The body of a transaction POST; raises only typed ``Refused`` errors (fuzzed)."""
    value = _usual_transaction(body, max_bytes)
    if value is None:
        value = codec.unpack(body, what="request", max_bytes=max_bytes)
    optional = {k for k in ("covers", "approvals") if isinstance(value, dict) and k in value}
    with_covers = "covers" in optional
    fields = codec.exact_map("request", value, TRANSACTION_FIELDS | optional)
    origin, txn, envelopes = fields["origin"], fields["txn"], fields["envelopes"]
    if not isinstance(origin, str):
        raise Malformed("origin must be a node id")
    if not isinstance(txn, bytes) or len(txn) != 16:
        raise Malformed("txn must be a 16-byte id")
    if not isinstance(envelopes, list) or not all(isinstance(e, bytes) for e in envelopes):
        raise Malformed("envelopes must be a list of byte strings")
    if len(envelopes) > MAX_TRANSACTION_ENVELOPES:
        raise LimitExceeded(f"at most {MAX_TRANSACTION_ENVELOPES} envelopes per transaction")
    return Transaction(origin, txn, envelopes,
                       _covers(fields["covers"], len(envelopes)) if with_covers else {},
                       _approvals(fields["approvals"], len(envelopes))
                       if "approvals" in optional else {})


def _approvals(value: Any, envelopes: int) -> dict[bytes, bytes]:
    """``[[envelope id, statement], ...]``: at most one per envelope of the transaction."""
    if not isinstance(value, list) or len(value) > envelopes:
        raise Malformed("approvals must be a list of at most one entry per envelope")
    out: dict[bytes, bytes] = {}
    for entry in value:
        if (not isinstance(entry, list) or len(entry) != 2 or not _is_id(entry[0])
                or not isinstance(entry[1], bytes) or len(entry[1]) > MAX_APPROVAL_BYTES
                or entry[0] in out):
            raise Malformed(f"approvals entries must be [envelope id, statement of at most "
                            f"{MAX_APPROVAL_BYTES} bytes], one per envelope")
        out[entry[0]] = entry[1]
    return out


def encode_approvals(approvals: dict[bytes, bytes]) -> list[list[bytes]]:
    return [[eid, statement] for eid, statement in approvals.items()]


def _covers(value: Any, envelopes: int) -> dict[bytes, tuple[bytes, ...]]:
    """``[[carrier id, [envelope id, ...]], ...]``: at most one entry per envelope of the
    transaction, each 1 to ``MAX_BATCH_IDS`` ids."""
    if not isinstance(value, list) or len(value) > envelopes:
        raise Malformed("covers must be a list of at most one entry per envelope")
    out: dict[bytes, tuple[bytes, ...]] = {}
    for entry in value:
        if (not isinstance(entry, list) or len(entry) != 2 or not _is_id(entry[0])
                or not isinstance(entry[1], list) or not 0 < len(entry[1]) <= MAX_BATCH_IDS
                or not all(_is_id(x) for x in entry[1]) or entry[0] in out):
            raise Malformed(f"covers entries must be [carrier id, [1 to {MAX_BATCH_IDS} "
                            "envelope ids]], one per carrier")
        out[entry[0]] = tuple(entry[1])
    return out


def encode_covers(covers: dict[bytes, list[bytes]]) -> list[list[Any]]:
    return [[carrier, ids] for carrier, ids in covers.items()]


def _is_id(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == ENVELOPE_ID_BYTES


# --- answers to what this node sends ---------------------------------------------------------
# A peer is hostile until proven otherwise: its answer is decoded here, by pure functions
# that return typed outcomes or raise ``Malformed`` (nothing else), and the sender only ever
# acts on those outcomes. A malformed answer fails that peer's transaction (backoff), never
# more.


@dataclass(frozen=True)
class Delivered:
    """Stored at the peer now, or already before (``duplicate``): the hop is done."""

    envelope_id: bytes
    duplicate: bool


@dataclass(frozen=True)
class NotYet:
    """Refused for a reason that may pass (a card still on its way, a full disk): retry."""

    envelope_id: bytes
    code: str


@dataclass(frozen=True)
class RefusedForGood:
    """Refused for good: the hop ends REFUSED and its sender gets a non-delivery notice."""

    envelope_id: bytes
    code: str
    detail: str


Outcome = Delivered | NotYet | RefusedForGood


def _known_code(code: object) -> str:
    if not isinstance(code, str) or not (code in KNOWN_CODES or _POLICY_CODE.fullmatch(code)):
        raise Malformed(f"peer answered an unknown refusal code {str(code)[:40]!r}")
    return code


def _answer_map(payload: bytes, fields: set[str]) -> dict[str, Any]:
    try:
        value = codec.unpack(payload, what="answer", max_bytes=MAX_ANSWER_BYTES)
    except Refused as exc:  # LimitExceeded too: to the sender, all one malformed answer
        raise Malformed(exc.detail) from exc
    return codec.exact_map("answer", value, fields)


def _results(payload: bytes, count: int) -> list[Any]:
    results = _answer_map(payload, {"results"})["results"]
    if not isinstance(results, list) or len(results) != count:
        raise Malformed("peer answered a different number of results")
    return results


def decode_transaction_answer(payload: bytes, batch: list[bytes]) -> list[Outcome]:
    """The answer to a transaction of the envelopes ``batch`` (their ids, in the order
    sent): one ``[status, code, detail]`` per envelope, in the same order (the position is
    what names the envelope, so every outcome belongs to the batch sent). ``status`` is
    accepted/duplicate (code and detail empty) or refused (a known code, a reason of at most
    ``MAX_DETAIL_IN`` characters)."""
    for eid in batch:
        if not isinstance(eid, bytes) or len(eid) != ENVELOPE_ID_BYTES:
            raise ValueError("a batch is a list of envelope ids")  # our bug, not the peer's
    outcomes: list[Outcome] = []
    for eid, result in zip(batch, _results(payload, len(batch)), strict=True):
        if not isinstance(result, list) or len(result) != 3:
            raise Malformed("peer answered a malformed result")
        status, code, why = result
        if not isinstance(code, str) or not isinstance(why, str) or len(why) > MAX_DETAIL_IN:
            raise Malformed("peer answered a result whose code or reason is not a short text")
        if status in (ACCEPTED, DUPLICATE):
            if code or why:
                raise Malformed("peer answered an accepted result with a refusal code")
            outcomes.append(Delivered(eid, duplicate=status == DUPLICATE))
        elif status == REFUSED:
            code = _known_code(code)
            outcomes.append(NotYet(eid, code) if code in RETRYABLE_CODES
                            else RefusedForGood(eid, code, why[:MAX_DETAIL]))
        else:
            raise Malformed(f"peer answered an unknown status {str(status)[:20]!r}")
    return outcomes


def decode_revocations_answer(payload: bytes, count: int) -> list[bool]:
    """The answer to ``count`` revocation statements: per statement, whether it is done
    (accepted, or refused for good) rather than to be sent again (a "not yet" refusal)."""
    done: list[bool] = []
    for result in _results(payload, count):
        if not isinstance(result, list) or len(result) != 2:
            raise Malformed("peer answered a malformed revocation result")
        status, code = result
        if status not in (ACCEPTED, DUPLICATE, REFUSED) or not isinstance(code, str):
            raise Malformed("peer answered a malformed revocation result")
        if status == REFUSED:
            done.append(_known_code(code) not in RETRYABLE_CODES)
        else:
            done.append(True)
    return done


def decode_directory_answer(payload: bytes) -> None:
    """The answer to a directory push: only its shape matters to the sender."""
    _answer_map(payload, {"stored", "refused"})
