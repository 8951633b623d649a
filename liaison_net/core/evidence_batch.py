"""One signature over many statements of one maker: batch evidence.

Why: a node that accepts hundreds of envelopes a second from one officer owed each its own
signed, sealed and stored "accepted" envelope. Instead the effects drain signs, per sender
and pass, ONE batch statement over a Merkle tree (``core/merkle``, RFC 9162) whose leaves
are the ordinary unsigned statements (``core/evidence`` ``Statement.to_wire``, one per
envelope), and seals it once for the sender.

Shapes (canonical msgpack)::

    batch statement   [key id, body, Ed25519(BATCH_DOMAIN || body)]
        body          {v, step, root, size, by, at}      at: when the batch was signed
    carrier content   {v, batch, leaves}                 what the sender's inbox holds
    proof             {v, batch, leaf, index, path}      one envelope's evidence alone

The sender believes one envelope's statement from a proof: the batch signature verifies
under a key that belongs to ``by``, the leaf decodes to a statement with the batch's step
and maker, and ``path`` leads from that leaf at ``index`` to the signed root of a tree of
``size`` leaves. Then ``evidence.check_about`` applies to the leaf statement as to a single
one. A proof names no other envelope of the batch, so the sender can show it to anyone.
The batch domain differs from a single statement's, so neither signature passes for the
other. ``verify_evidence`` takes either form: old single statements still verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec, crypto, merkle
from liaison_net.core.evidence import (
    MAX_STATEMENT_BYTES,
    Attested,
    Statement,
    Step,
    decode_body,
    read_statement,
    verify_statement,
)
from liaison_net.core.evidence import (
    VERSION as EVIDENCE_VERSION,
)
from liaison_net.core.ids import check_officer_id
from liaison_net.core.sealing import KeyLookup, SignerKey
from liaison_net.errors import Forbidden, LimitExceeded, Malformed, UnknownKey

BATCH_DOMAIN = b"liaison-net/evidence-batch/v1\x00"
VERSION = 1
MAX_BATCH_IDS = 256  # envelopes one batch statement covers
MAX_BATCH_LEAF_BYTES = 512 * 1024  # all leaves of one batch: the carrier stays well in 1 MiB
MAX_PROOF_DEPTH = (MAX_BATCH_IDS - 1).bit_length()  # 8
MAX_PROOF_BYTES = MAX_STATEMENT_BYTES + 2048
MAX_CONTENT_BYTES = MAX_BATCH_LEAF_BYTES + 64 * MAX_BATCH_IDS + 2048
_BODY_FIELDS = {"v", "step", "root", "size", "by", "at"}
_CONTENT_FIELDS = {"v", "batch", "leaves"}
_PROOF_FIELDS = {"v", "batch", "leaf", "index", "path"}


@dataclass(frozen=True)
class BatchStatement:
    step: Step
    root: bytes
    size: int
    by: str
    at: int

    def to_wire(self) -> dict[str, Any]:
        return {"v": VERSION, "step": self.step.value, "root": self.root, "size": self.size,
                "by": self.by, "at": self.at}


def leaf_bytes(statement: Statement) -> bytes:
    """``codec.pack(statement.to_wire())``: the same map written in sorted key order, the
    fields' types being what ``evidence.make`` and ``decode_body`` give (a time that is not
    an int takes ``pack``, which refuses a float)."""
    s = statement
    if type(s.at) is not int:
        return codec.pack(s.to_wire())
    return codec.pack_ordered({"at": s.at, "by": s.by, "envelope": s.envelope,
                               "recipients": list(s.recipients), "step": s.step.value,
                               "v": EVIDENCE_VERSION})


# Statements this process made and packed for its effects (``made_leaf``), by their bytes:
# the effects drain reads each one back from its effect row in the same process moments
# later (``Leaf.read``), and decoding and checking it again was 6 % of a destination's event
# loop at a catch-up (docs/performance.md, lane catchup16). Taken out when read; bounded,
# the oldest dropped first (an effect never stored, a duplicate's, is never read). After a
# restart it is empty: the rows are decoded as before.
_MADE: dict[bytes, Statement] = {}
MAX_MADE = 4096


def made_leaf(statement: Statement) -> bytes:
    """``leaf_bytes`` of a statement this node made itself (``evidence.make`` checked its
    shape), remembered so that ``Leaf.read`` of exactly these bytes need not decode them:
    they are what decoding them would give back (canonical bytes decode to one statement)."""
    raw = leaf_bytes(statement)
    if len(_MADE) >= MAX_MADE:
        del _MADE[next(iter(_MADE))]
    _MADE[raw] = statement
    return raw


@dataclass(frozen=True)
class Leaf:
    """A statement with its canonical bytes, the Merkle leaf: encoded (or read) once, so
    that cutting a sender's statements into batches and signing them never packs a
    statement again (the drain keeps each statement's bytes in its effect row)."""

    statement: Statement
    raw: bytes

    @classmethod
    def of(cls, statement: Statement) -> Leaf:
        return cls(statement, leaf_bytes(statement))

    @classmethod
    def read(cls, raw: bytes) -> Leaf:
        """Stored statement bytes, decoded and checked. ``codec.unpack`` accepts canonical
        bytes only, so ``raw`` is exactly ``leaf_bytes`` of the statement it decodes to; bytes
        this process made (``made_leaf``) are that statement already."""
        made = _MADE.pop(raw, None)
        return cls(made if made is not None else decode_body(raw), raw)


def _leaves(items: Sequence[Statement] | Sequence[Leaf]) -> list[Leaf]:
    return [x if isinstance(x, Leaf) else Leaf.of(x) for x in items]


def _fits_leaves(leaves: Sequence[Leaf]) -> bool:
    return (0 < len(leaves) <= MAX_BATCH_IDS
            and sum(len(x.raw) for x in leaves) <= MAX_BATCH_LEAF_BYTES)


def fits(items: Sequence[Statement] | Sequence[Leaf]) -> bool:
    """Whether one batch may cover ``items`` (count and bytes)."""
    return _fits_leaves(_leaves(items))


def cut(items: Sequence[Statement] | Sequence[Leaf]) -> list[tuple[int, int]]:
    """``items`` in order, cut greedily into runs ``[start, end)`` that each ``fits``
    (a statement too big for any batch still gets a run of its own, which ``sign_batch``
    then refuses). Each leaf is sized once (none is encoded for a ``Leaf``): linear, not
    a ``fits`` per added statement."""
    runs: list[tuple[int, int]] = []
    start = size = 0
    for i, leaf in enumerate(_leaves(items)):
        width = len(leaf.raw)
        if i > start and (i - start >= MAX_BATCH_IDS or size + width > MAX_BATCH_LEAF_BYTES):
            runs.append((start, i))
            start, size = i, 0
        size += width
    if start < len(items):
        runs.append((start, len(items)))
    return runs


def sign_batch(items: Sequence[Statement] | Sequence[Leaf], key: crypto.SigningKeyPair, *,
               at: int) -> bytes:
    """The carrier content: one signature over ``items`` (one maker, one step, one
    envelope each, at most ``MAX_BATCH_IDS`` and ``MAX_BATCH_LEAF_BYTES``). Given as
    ``Leaf``s, their bytes are the leaves as they are; the signed content is the same."""
    leaves = _leaves(items)
    if not _fits_leaves(leaves):
        raise LimitExceeded(f"a batch covers 1 to {MAX_BATCH_IDS} statements of at most "
                            f"{MAX_BATCH_LEAF_BYTES} bytes in all")
    first = leaves[0].statement
    if any(x.statement.step is not first.step or x.statement.by != first.by for x in leaves):
        raise Malformed("a batch covers statements of one step by one maker")
    if len({x.statement.envelope for x in leaves}) != len(leaves):
        raise Malformed("a batch covers each envelope once")
    raws = [x.raw for x in leaves]
    batch = BatchStatement(first.step, merkle.root([merkle.leaf_hash(x) for x in raws]),
                           len(raws), first.by, at)
    _check_batch(batch)
    body = codec.pack(batch.to_wire())
    signed = codec.pack([key.key_id, body, crypto.sign(key, BATCH_DOMAIN + body)])
    return codec.pack({"v": VERSION, "batch": signed, "leaves": raws})


def is_batch(content: bytes) -> bool:
    """Whether an evidence envelope's content is a batch (else a single statement)."""
    try:
        value = codec.unpack(content, what="evidence", max_bytes=MAX_CONTENT_BYTES)
    except Malformed:
        return False
    return isinstance(value, dict)


def _content(content: bytes) -> tuple[bytes, list[bytes]]:
    d = codec.exact_map("batch evidence", codec.unpack(
        content, what="batch evidence", max_bytes=MAX_CONTENT_BYTES), _CONTENT_FIELDS)
    leaves = d["leaves"]
    if (d["v"] != VERSION or not isinstance(d["batch"], bytes) or not isinstance(leaves, list)
            or not 0 < len(leaves) <= MAX_BATCH_IDS
            or not all(isinstance(x, bytes) for x in leaves)):
        raise Malformed(f"batch evidence must be {{v, batch, leaves}} with 1 to "
                        f"{MAX_BATCH_IDS} leaves")
    return d["batch"], leaves


def proof_for(content: bytes, envelope_id: bytes) -> bytes:
    """The proof, from a carrier's content, about ``envelope_id`` (NOT verified: that is
    ``verify_evidence``'s job); ``Forbidden`` if no leaf names it."""
    batch, leaves = _content(content)
    for index, leaf in enumerate(leaves):
        if decode_body(leaf).envelope == envelope_id:
            path = merkle.inclusion_proof(index, [merkle.leaf_hash(x) for x in leaves])
            return codec.pack({"v": VERSION, "batch": batch, "leaf": leaf, "index": index,
                               "path": path})
    raise Forbidden("this batch evidence does not cover the envelope")


def evidence_about(content: bytes, envelope_id: bytes) -> bytes:
    """What an evidence envelope's content says about ``envelope_id``, as bytes that verify
    on their own: a single statement as it is, a batch as the proof for that envelope."""
    return proof_for(content, envelope_id) if is_batch(content) else content


def _verify_batch(raw: bytes, lookup: KeyLookup) -> tuple[BatchStatement, SignerKey, bytes]:
    unverified = read_statement(raw)  # the same [key id, body, signature] wrapper
    signer = lookup(unverified.key_id)  # raises Revoked for a revoked key
    if signer is None:
        raise UnknownKey(f"batch evidence signed by key {unverified.key_id.hex()}, which "
                         "the directory does not know")
    crypto.verify(signer.public_key, BATCH_DOMAIN + unverified.body, unverified.signature)
    batch = _decode_batch(unverified.body)
    if batch.by != signer.principal:
        raise Forbidden(f"evidence claims to be by {batch.by} but was signed by "
                        f"{signer.principal}")
    return batch, signer, unverified.key_id


def verify_proof(raw: bytes, lookup: KeyLookup) -> Attested:
    """The leaf statement of a proof, if its batch signature verifies under a key of its
    maker and its path leads to the signed root."""
    d = codec.exact_map("evidence proof", codec.unpack(
        raw, what="evidence proof", max_bytes=MAX_PROOF_BYTES), _PROOF_FIELDS)
    index, path = d["index"], d["path"]
    if (d["v"] != VERSION or not isinstance(d["batch"], bytes)
            or not isinstance(d["leaf"], bytes) or not isinstance(index, int)
            or isinstance(index, bool) or not isinstance(path, list)
            or len(path) > MAX_PROOF_DEPTH or not all(isinstance(p, bytes) for p in path)):
        raise Malformed("evidence proof must be {v, batch, leaf, index, path}")
    batch, signer, key_id = _verify_batch(d["batch"], lookup)
    statement = decode_body(d["leaf"])
    if statement.step is not batch.step or statement.by != batch.by:
        raise Forbidden("the leaf is not a statement of the batch's step and maker")
    if not merkle.verify_inclusion(merkle.leaf_hash(d["leaf"]), index, batch.size, path,
                                   batch.root):
        raise Forbidden("the statement is not covered by the signed batch")
    return Attested(statement, signer, key_id, raw)


def verify_batch(content: bytes, lookup: KeyLookup) -> list[Statement]:
    """Every statement a carrier's content covers, after one signature check and one root
    recomputation (for those who count them all: the soak)."""
    raw, leaves = _content(content)
    batch, _, _ = _verify_batch(raw, lookup)
    statements = [decode_body(x) for x in leaves]
    if (len(leaves) != batch.size
            or merkle.root([merkle.leaf_hash(x) for x in leaves]) != batch.root):
        raise Forbidden("the leaves do not make the signed root")
    if any(s.step is not batch.step or s.by != batch.by for s in statements):
        raise Forbidden("a leaf is not a statement of the batch's step and maker")
    return statements


def verify_evidence(raw: bytes, lookup: KeyLookup) -> Attested:
    """A single statement or one envelope's proof from a batch, verified."""
    value = codec.unpack(raw, what="evidence", max_bytes=MAX_PROOF_BYTES)
    return verify_proof(raw, lookup) if isinstance(value, dict) else verify_statement(raw,
                                                                                      lookup)


def claimed(raw: bytes) -> Statement:
    """What a single statement or a proof claims, NOT verified (for showing a refusal)."""
    value = codec.unpack(raw, what="evidence", max_bytes=MAX_PROOF_BYTES)
    if isinstance(value, dict) and isinstance(value.get("leaf"), bytes):
        return decode_body(value["leaf"])
    return decode_body(read_statement(raw).body)


def claimed_batch(content: bytes) -> list[Statement]:
    """The statements a carrier's content claims to cover, NOT verified (for ``read``)."""
    return [decode_body(x) for x in _content(content)[1]]


def _decode_batch(body: bytes) -> BatchStatement:
    d = codec.exact_map("batch statement", codec.unpack(
        body, what="batch statement", max_bytes=4096), _BODY_FIELDS)
    if d["v"] != VERSION or isinstance(d["v"], bool):
        raise Malformed(f"unsupported batch statement version {d['v']!r:.20}")
    try:
        step = Step(d["step"])
    except (ValueError, TypeError) as exc:
        raise Malformed("batch statement step unknown") from exc
    size, at = d["size"], d["at"]
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(at, int) \
            or isinstance(at, bool) or not isinstance(d["root"], bytes):
        raise Malformed("batch statement size, at and root must be integers and bytes")
    batch = BatchStatement(step, d["root"], size, check_officer_id(d["by"],
                                                                   what="evidence maker"), at)
    _check_batch(batch)
    return batch


def _check_batch(b: BatchStatement) -> None:
    if len(b.root) != merkle.HASH_BYTES:
        raise Malformed("batch root must be a SHA-256 hash")
    if not 0 < b.size <= MAX_BATCH_IDS:
        raise LimitExceeded(f"a batch covers 1 to {MAX_BATCH_IDS} envelopes")
    if not 0 < b.at < 1 << 48:
        raise Malformed("batch time out of range")
