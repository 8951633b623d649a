"""Audit checkpoints: a node's signed statement of its audit log's Merkle root, witnessed.

The audit chain (``core.audit``) shows an edit only to someone who knows the head; alone,
an operator can cut, delete or edit rows and recompute every hash after them. So the log is
also an RFC 9162 Merkle tree whose leaves are the entries' chain hashes, in order
(``leaf``), and a node signs a **checkpoint** (node, size, root, time) every few entries or
seconds and sends it to every peer. Each peer, a **witness**, checks it against the last
checkpoint it saw from that node (a consistency proof, ``core.merkle``), keeps it and
returns a **cosignature**. A rewrite of anything a witnessed checkpoint covers is then
visible: the recomputed root differs from the one the peers signed (``first_difference``),
and a node that shows two witnesses two histories is caught when they compare notes.

Wire forms (canonical msgpack, verify the exact bytes, then decode):
    signed checkpoint  [body, Ed25519(CHECKPOINT_DOMAIN || body)]  by the node's key
    cosignature        [witness, at, Ed25519(COSIGN_DOMAIN || pack([witness, at, body]))]

``judge`` is the witness's whole decision, a pure function of what it holds and what it got.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec, crypto, merkle
from liaison_net.core.audit import AuditEntry
from liaison_net.core.ids import check_node_id
from liaison_net.core.kept_leaves import KeptLeaves
from liaison_net.errors import Malformed, Refused

CHECKPOINT_DOMAIN = b"liaison-net/audit-checkpoint/v1\x00"
COSIGN_DOMAIN = b"liaison-net/audit-cosignature/v1\x00"
MAX_CHECKPOINT_BYTES = 512
MAX_COSIGNATURE_BYTES = 256
MAX_PROOF_HASHES = 64  # a consistency proof is at most about 2 log2(size) hashes
MAX_LOG_SIZE = 1 << 48
MAX_SEEN = 16  # other nodes' checkpoints a witness is shown to compare notes
MAX_HEARD = 16  # checkpoints of one node heard of, not yet proven, kept by a witness
MAX_PROOFS = MAX_HEARD + 1  # consistency proofs in one offer: from the latest and the heard
CHECKPOINT_FIELDS = {"node", "size", "root", "at"}


@dataclass(frozen=True)
class Checkpoint:
    node: str
    size: int  # entries covered: the first ``size`` of the log, in seq order
    root: bytes  # RFC 9162 root over their leaves
    at: int  # ms, the node's clock

    def body(self) -> bytes:
        return codec.pack({"node": self.node, "size": self.size, "root": self.root,
                           "at": self.at})


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    raw: bytes  # the wire form, kept and forwarded as received

    @property
    def body(self) -> bytes:
        return self.checkpoint.body()


@dataclass(frozen=True)
class Cosignature:
    witness: str
    at: int
    signature: bytes

    def to_wire(self) -> bytes:
        return codec.pack([self.witness, self.at, self.signature])


def leaf(entry: AuditEntry) -> bytes:
    """The Merkle leaf of an audit entry: its chain hash, which covers every entry before
    it too, so the first leaf that differs is the first entry that was changed."""
    return merkle.leaf_hash(entry.hash)


def leaves(entries: Sequence[AuditEntry]) -> list[bytes]:
    return [leaf(e) for e in entries]


def sign_checkpoint(checkpoint: Checkpoint, key: crypto.SigningKeyPair) -> SignedCheckpoint:
    body = checkpoint.body()
    raw = codec.pack([body, crypto.sign(key, CHECKPOINT_DOMAIN + body)])
    return SignedCheckpoint(checkpoint, raw)


def _pair(raw: bytes, what: str, max_bytes: int) -> list[Any]:
    value = codec.unpack(raw, what=what, max_bytes=max_bytes)
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(x, bytes) for x in value):
        raise Malformed(f"{what} must be [body, signature]")
    return value


def claimed_node(raw: bytes) -> str | None:
    """The node an unverified checkpoint names, only to pick the key that must verify it
    (None if it names none); nothing else of it is read before ``verify_checkpoint``."""
    try:
        body, _ = _pair(raw, "checkpoint", MAX_CHECKPOINT_BYTES)
        value = codec.unpack(body, what="checkpoint body", max_bytes=MAX_CHECKPOINT_BYTES)
    except Refused:
        return None
    node = value.get("node") if isinstance(value, dict) else None
    return node if isinstance(node, str) and len(node) <= 64 else None


def verify_checkpoint(raw: bytes, public: bytes, *, node: str) -> SignedCheckpoint:
    """A checkpoint of ``node``, its signature verified under ``public`` before its body is
    decoded; raises ``BadSignature`` or ``Malformed``."""
    body, signature = _pair(raw, "checkpoint", MAX_CHECKPOINT_BYTES)
    crypto.verify(public, CHECKPOINT_DOMAIN + body, signature)
    fields = codec.exact_map("checkpoint", codec.unpack(body, what="checkpoint body",
                                                        max_bytes=MAX_CHECKPOINT_BYTES),
                             CHECKPOINT_FIELDS)
    checkpoint = Checkpoint(check_node_id(fields["node"]), fields["size"], fields["root"],
                            fields["at"])
    if checkpoint.node != node:
        raise Malformed(f"a checkpoint of {checkpoint.node:.20} presented as one of {node}")
    _check_shape(checkpoint)
    return SignedCheckpoint(checkpoint, raw)


def decode_unvouched(raw: bytes) -> SignedCheckpoint:
    """A checkpoint's fields with its origin's signature *not* checked: only for one whose
    cosignatures are then verified (``witnessed_by``), since they sign the same body."""
    body, _ = _pair(raw, "checkpoint", MAX_CHECKPOINT_BYTES)
    fields = codec.exact_map("checkpoint", codec.unpack(body, what="checkpoint body",
                                                        max_bytes=MAX_CHECKPOINT_BYTES),
                             CHECKPOINT_FIELDS)
    checkpoint = Checkpoint(check_node_id(fields["node"]), fields["size"], fields["root"],
                            fields["at"])
    _check_shape(checkpoint)
    if checkpoint.body() != body:
        raise Malformed("checkpoint body is not in canonical form")
    return SignedCheckpoint(checkpoint, raw)


def witnessed_by(raw: bytes, cosignatures: Mapping[str, bytes],
                 witness_keys: Mapping[str, Sequence[bytes]]
                 ) -> tuple[SignedCheckpoint, list[str]]:
    """A stored checkpoint and the witnesses whose cosignature of it verifies under one of
    the keys given for them (the current one, or one a rotation replaced); the others, and
    witnesses without a key, are left out."""
    signed = decode_unvouched(raw)
    good = []
    for witness, cosig in sorted(cosignatures.items()):
        if witness == signed.checkpoint.node:
            continue
        for public in witness_keys.get(witness, ()):
            try:
                verify_cosignature(cosig, signed, public, witness=witness)
            except Refused:
                continue
            good.append(witness)
            break
    return signed, good


def _check_shape(c: Checkpoint) -> None:
    if not _is_int(c.size) or not 0 < c.size <= MAX_LOG_SIZE:
        raise Malformed(f"checkpoint size must be 1 to {MAX_LOG_SIZE}")
    if not isinstance(c.root, bytes) or len(c.root) != merkle.HASH_BYTES:
        raise Malformed("checkpoint root must be 32 bytes")
    if not _is_int(c.at) or c.at < 0:
        raise Malformed("checkpoint time must be a non-negative integer")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cosigned(witness: str, at: int, checkpoint_body: bytes) -> bytes:
    return COSIGN_DOMAIN + codec.pack([witness, at, checkpoint_body])


def cosign(signed: SignedCheckpoint, *, witness: str, key: crypto.SigningKeyPair,
           at: int) -> Cosignature:
    """The witness's signature: "I, ``witness``, saw this checkpoint at ``at``, and it was
    consistent with everything I had seen of that node"."""
    return Cosignature(witness, at, crypto.sign(key, _cosigned(witness, at, signed.body)))


def verify_cosignature(raw: bytes, signed: SignedCheckpoint, public: bytes, *,
                       witness: str) -> Cosignature:
    """A cosignature of ``signed`` by ``witness``, verified under ``public``."""
    value = codec.unpack(raw, what="cosignature", max_bytes=MAX_COSIGNATURE_BYTES)
    if not isinstance(value, list) or len(value) != 3:
        raise Malformed("cosignature must be [witness, at, signature]")
    name, at, signature = value
    if name != witness or not _is_int(at) or not isinstance(signature, bytes):
        raise Malformed(f"cosignature is not one of {witness} in the expected shape")
    crypto.verify(public, _cosigned(witness, at, signed.body), signature)
    return Cosignature(witness, at, signature)


def check_proof_hashes(value: object) -> list[bytes]:
    """A consistency or inclusion proof as received: a short list of 32-byte hashes."""
    if (not isinstance(value, list) or len(value) > MAX_PROOF_HASHES
            or not all(isinstance(h, bytes) and len(h) == merkle.HASH_BYTES for h in value)):
        raise Malformed(f"a proof is a list of at most {MAX_PROOF_HASHES} 32-byte hashes")
    return value


# --- the witness's decision ------------------------------------------------------------------


class Verdict(enum.Enum):
    WITNESSED = "witnessed"  # consistent with all seen: cosign and keep
    NEED_PROOF = "need_proof"  # bigger than what is held: ask for consistency proofs
    SPLIT_VIEW = "split_view"  # another root for a size already seen
    ROLLBACK = "rollback"  # smaller than a checkpoint seen before, and not one of them
    INCONSISTENT = "inconsistent"  # a proof does not lead from what is held to it

    @property
    def alarm(self) -> bool:
        return self in (Verdict.SPLIT_VIEW, Verdict.ROLLBACK, Verdict.INCONSISTENT)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    need_from: tuple[int, ...] = ()  # NEED_PROOF: the sizes to prove consistency from
    proven: tuple[Checkpoint, ...] = ()  # WITNESSED: heard checkpoints now shown consistent


def judge(new: Checkpoint, *, latest: Checkpoint | None, same_size: Checkpoint | None,
          heard: Sequence[Checkpoint] = (),
          proofs: Mapping[int, Sequence[bytes]]) -> Judgement:
    """What a witness makes of ``new`` (a node's checkpoint, its signature verified), given
    the latest checkpoint of that node it witnessed, the one it holds of the same size (if
    any), and the ones it only *heard* of: signed by the node, passed on by other witnesses,
    never yet shown consistent with what this witness holds. ``proofs`` maps an old size to
    a consistency proof from it to ``new``.

    The first checkpoint seen of a node is taken on trust (there is nothing to compare it
    with); from then on the log may only grow, and only as proofs from the latest one
    witnessed *and* from every one heard show. Heard checkpoints are what makes a split
    view visible even when a node shows each witness different sizes: to be cosigned again,
    it must prove its log extends the one the other witnesses were shown."""
    for held in (same_size, latest, *heard):
        if held is not None and held.size == new.size and not crypto.constant_time_equal(
                held.root, new.root):
            return Judgement(Verdict.SPLIT_VIEW)
    if same_size is not None and not heard:
        return Judgement(Verdict.WITNESSED)  # a checkpoint held already, offered again
    anchors = [c for c in (latest, *heard) if c is not None and c.size != new.size]
    if any(c.size > new.size for c in anchors):
        return Judgement(Verdict.ROLLBACK)
    missing = tuple(sorted({c.size for c in anchors} - set(proofs)))
    if missing:
        return Judgement(Verdict.NEED_PROOF, need_from=missing)
    for c in anchors:
        if not merkle.verify_consistency(c.size, new.size, c.root, new.root, proofs[c.size]):
            return Judgement(Verdict.INCONSISTENT)
    return Judgement(Verdict.WITNESSED, proven=tuple(heard))


# --- what the log's own administrator checks -------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Where the local log parts from a witnessed checkpoint."""

    checkpoint: Checkpoint
    first_index: int  # 0-based position of the first entry that differs (or is missing)
    exact: bool  # False: only known to lie in [first_index, checkpoint.size)
    truncated: bool  # the log is shorter than the checkpoint
    #: [start, end): where the kept subtree roots, under the signed root, place the first
    #: change (``core.kept_leaves``), from ``known_good`` on if that is later.
    kept_range: tuple[int, int] | None = None
    #: An exact ``first_index`` that only a kept 2-byte mark names (no full leaf under the
    #: signed root): whoever rewrote the database may have moved it within ``kept_range``.
    named_by_mark: bool = False


def first_difference(local: Sequence[bytes], checkpoint: Checkpoint, *,
                     known_good: int = 0,
                     original: KeptLeaves | None = None) -> Difference | None:
    """None if the first ``checkpoint.size`` local leaves have the checkpoint's root.
    Otherwise the first position that differs: exact when the log is only cut short (its
    prefix still matching), or when the ``original`` leaves the node kept up to this
    checkpoint (``core.kept_leaves``) hash to the signed root and a mark names it (a
    rewrite of the kept roots shows here as a mismatch, and only the range is reported;
    one of the marks can move the name only within ``kept_range``).
    ``known_good``: a prefix already shown to match by an earlier checkpoint."""
    n = checkpoint.size
    if len(local) >= n and merkle.root(local[:n]) == checkpoint.root:
        return None
    if original is not None and original.size == n and original.root() == checkpoint.root:
        found = original.first_difference(local, known_good=min(known_good, len(local)))
        if found is not None:
            start, end, named = found
            index = named if named is not None else start
            return Difference(checkpoint, index, named is not None, len(local) < n,
                              kept_range=(start, end),
                              named_by_mark=named is not None and not original.holds_leaf(
                                  named))
    if len(local) < n and len(local) > 0 and known_good >= len(local):
        return Difference(checkpoint, len(local), True, True)
    return Difference(checkpoint, min(known_good, len(local)), False, len(local) < n)
