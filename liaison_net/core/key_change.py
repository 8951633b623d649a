"""Node key changes need the other national nodes: co-signed, strictly sequential statements.

A node's signing key speaks for a country, so neither the node alone nor the node plus the
network CA may replace it. As in TUF root rotation, a *key change statement* takes effect
at a peer only with co-signatures of a threshold of the other national nodes (default 2 of
the other 3), each node counted once, and with a serial exactly one above the last change
the peer accepted for that node (a replay or a gap is refused). Three kinds:

- ``rotate``: a new key, also signed by the old one (the holder still controls it);
- ``replace``: the emergency path, the old key is lost; a new key *without* the old key's
  signature (the threshold is all that vouches for it), and no grace for the old key;
- ``revoke``: withdraw one of the node's superseded keys, signed by its current key.

Wire: ``[node, body, signature or nil, [[co-signer, signature], ...]]``. The node id sits
outside the body so every signature can be checked against exact bytes *before* the body
is decoded; the body names the node again and must agree. Co-signers sign
``COSIGN_DOMAIN + body``; the subject signs ``DOMAIN + body``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec, crypto
from liaison_net.core.ids import check_node_id
from liaison_net.errors import (
    BadSignature,
    CosignThreshold,
    Forbidden,
    LiaisonError,
    Malformed,
    SerialGap,
    SerialReplayed,
    UnknownKey,
)

DOMAIN = b"liaison-net/node-key-change/v1\x00"
COSIGN_DOMAIN = b"liaison-net/node-key-cosign/v1\x00"
MAX_STATEMENT_BYTES = 4096
MAX_COSIGNATURES = 8  # the other national nodes are 3; room for a larger network, bounded
MAX_REASON_CHARS = 256
DEFAULT_THRESHOLD = 2  # of the other national nodes (be, nl, lu, de-nw: 2 of 3)
MAX_THRESHOLD = MAX_COSIGNATURES
MAX_CHAIN = 16  # a node pushes its latest changes; a peer offline longer re-learns by hand
_FIELDS = {"kind", "node", "old_key_id", "new_signing_public", "serial", "issued", "reason"}


class Kind(enum.Enum):
    ROTATE = "rotate"
    REPLACE = "replace"
    REVOKE = "revoke"


@dataclass(frozen=True)
class KeyChange:
    kind: Kind
    node: str
    old_key_id: bytes  # the key replaced (rotate, replace) or revoked (revoke)
    new_signing_public: bytes | None  # rotate and replace only
    serial: int  # exactly one above the last change accepted for this node
    issued: int  # ms; a revocation is effective from then on
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "node": self.node, "old_key_id": self.old_key_id,
                "new_signing_public": self.new_signing_public, "serial": self.serial,
                "issued": self.issued, "reason": self.reason}

    @property
    def new_key_id(self) -> bytes | None:
        return (None if self.new_signing_public is None
                else crypto.signing_key_id(self.new_signing_public))


@dataclass(frozen=True)
class Statement:
    """A decoded statement: ``change`` is only trustworthy once ``verify`` returned it."""

    node: str
    body: bytes
    change: KeyChange
    signature: bytes | None
    cosignatures: tuple[tuple[str, bytes], ...]

    def to_bytes(self) -> bytes:
        return codec.pack([self.node, self.body, self.signature,
                           [[n, s] for n, s in self.cosignatures]])


@dataclass(frozen=True)
class Verified:
    statement: Statement
    counted: tuple[str, ...]  # the co-signers counted, each once, sorted

    @property
    def change(self) -> KeyChange:
        return self.statement.change


def propose(change: KeyChange, signer: crypto.SigningKeyPair | None) -> bytes:
    """A statement without co-signatures yet: signed by the old key (rotate), the node's
    current key (revoke), or by nobody (replace: the old key is lost)."""
    check_change(change)
    if change.kind is Kind.REPLACE:
        if signer is not None:
            raise Malformed("a replacement (key lost) carries no signature of the node; "
                            "with the old key at hand, rotate")
        signature = None
    elif signer is None:
        raise Malformed(f"a {change.kind.value} must be signed by the node")
    elif change.kind is Kind.ROTATE and signer.key_id != change.old_key_id:
        raise Malformed("a rotation must be signed by the key it replaces")
    elif change.kind is Kind.REVOKE and signer.key_id == change.old_key_id:
        raise Malformed("a node cannot revoke its current key: rotate or replace it")
    body = codec.pack(change.to_wire())
    if signer is not None:
        signature = crypto.sign(signer, DOMAIN + body)
    return Statement(change.node, body, change, signature, ()).to_bytes()


def cosign(raw: bytes, node_id: str, key: crypto.SigningKeyPair) -> bytes:
    """Add ``node_id``'s co-signature (replacing an earlier one of the same node)."""
    statement = decode(raw)
    if node_id == statement.node:
        raise Forbidden(f"node {node_id} cannot co-sign a change of its own key")
    signature = crypto.sign(key, COSIGN_DOMAIN + statement.body)
    others = tuple((n, s) for n, s in statement.cosignatures if n != node_id)
    if len(others) >= MAX_COSIGNATURES:
        raise Malformed(f"a statement carries at most {MAX_COSIGNATURES} co-signatures")
    return Statement(statement.node, statement.body, statement.change, statement.signature,
                     tuple(sorted((*others, (node_id, signature))))).to_bytes()


def split(raw: bytes) -> tuple[str, bytes, bytes | None, tuple[tuple[str, bytes], ...]]:
    """The outer frame, nothing from the body: (node, body, signature, co-signatures)."""
    value = codec.unpack(raw, what="key change", max_bytes=MAX_STATEMENT_BYTES)
    if (not isinstance(value, list) or len(value) != 4 or not isinstance(value[1], bytes)
            or not (value[2] is None or isinstance(value[2], bytes))
            or not isinstance(value[3], list)):
        raise Malformed("key change must be [node, body, signature or nil, co-signatures]")
    node = check_node_id(value[0], what="key change node")
    if len(value[3]) > MAX_COSIGNATURES:
        raise Malformed(f"a statement carries at most {MAX_COSIGNATURES} co-signatures")
    cosignatures = []
    for item in value[3]:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], bytes)):
            raise Malformed("a co-signature must be [node, signature]")
        cosignatures.append((check_node_id(item[0], what="co-signer"), item[1]))
    return node, value[1], value[2], tuple(cosignatures)


def decode(raw: bytes) -> Statement:
    """Decode without believing anything: for display and for adding a co-signature. What
    is acted on comes from ``verify``."""
    node, body, signature, cosignatures = split(raw)
    change = _change(body)
    if change.node != node:
        raise Malformed("the statement's body names another node than its frame")
    return Statement(node, body, change, signature, cosignatures)


def count_cosigners(node: str, body: bytes, cosignatures: tuple[tuple[str, bytes], ...],
                    cosigner_keys: Mapping[str, bytes]) -> tuple[str, ...]:
    """The co-signers whose signature verifies, each counted once: only nodes in
    ``cosigner_keys`` (the other national nodes' current, unrevoked keys), never the subject
    itself; a bad, unknown or repeated signature counts for nothing."""
    counted: set[str] = set()
    for signer, signature in cosignatures:
        if signer == node or signer in counted:
            continue
        public = cosigner_keys.get(signer)
        if public is None:
            continue
        try:
            crypto.verify(public, COSIGN_DOMAIN + body, signature)
        except BadSignature:
            continue
        counted.add(signer)
    return tuple(sorted(counted))


def verify(raw: bytes, *, subject_key: bytes | None, cosigner_keys: Mapping[str, bytes],
           threshold: int, last_serial: int | None, expected_node: str | None = None
           ) -> Verified:
    """Believe a key change only with the threshold of co-signatures, the node's own
    signature where its kind needs one, and the next serial.

    ``subject_key``: the node's key as the verifier knows it (the one a rotation replaces, a
    replacement says is lost, or that signs a revocation). ``last_serial`` None skips the
    sequence check (a reviewer who knows no earlier change). CosignThreshold below the
    threshold, BadSignature for the node's own signature, SerialReplayed / SerialGap for a
    serial that is not the next one, Malformed for the rest.
    """
    if not 0 <= threshold <= MAX_THRESHOLD:
        raise Malformed(f"co-signature threshold must be 0-{MAX_THRESHOLD}")
    node, body, signature, cosignatures = split(raw)
    if expected_node is not None and node != expected_node:
        raise Forbidden(f"a key change of {node} presented for {expected_node}")
    others = {n: k for n, k in cosigner_keys.items() if n != node}
    counted = count_cosigners(node, body, cosignatures, others)
    if len(counted) < threshold:
        raise CosignThreshold(
            f"key change of {node} is co-signed by {len(counted)} of the other national "
            f"nodes ({', '.join(counted) or 'none'}); {threshold} are needed")
    if signature is not None:
        if subject_key is None:
            raise UnknownKey(f"no key of {node} is known to check its signature")
        crypto.verify(subject_key, DOMAIN + body, signature)
    change = _change(body)
    if change.node != node:
        raise Malformed("the statement's body names another node than its frame")
    current_id = None if subject_key is None else crypto.signing_key_id(subject_key)
    if change.kind is Kind.REPLACE:
        if signature is not None:
            raise Malformed("a replacement (key lost) carries no signature of the node")
    elif signature is None:
        raise Malformed(f"a {change.kind.value} must be signed by the node")
    if change.kind is not Kind.REVOKE and current_id is not None \
            and change.old_key_id != current_id:
        raise Forbidden(f"the {change.kind.value} replaces key {change.old_key_id.hex()}, "
                        f"not the current key {current_id.hex()} of {node}")
    if change.kind is Kind.REVOKE and change.old_key_id == current_id:
        raise Malformed("a node cannot revoke its current key: rotate or replace it")
    if last_serial is not None:
        check_serial(node, change.serial, last_serial)
    return Verified(Statement(node, body, change, signature, cosignatures), counted)


def check_serial(node: str, serial: int, last_serial: int) -> None:
    if serial <= last_serial:
        raise SerialReplayed(f"key change serial {serial} of {node} is not newer than "
                             f"{last_serial}: a replayed or stale statement")
    if serial != last_serial + 1:
        raise SerialGap(f"key change serial {serial} of {node} skips "
                        f"{serial - last_serial - 1} change(s) after {last_serial}")


def check_change(c: KeyChange) -> None:
    check_node_id(c.node, what="key change node")
    codec.exact_bytes(c.old_key_id, crypto.KEY_ID_BYTES, "old_key_id")
    if (c.kind is Kind.REVOKE) != (c.new_signing_public is None):
        raise Malformed("rotations and replacements name a new key; revocations none")
    if c.new_signing_public is not None:
        # The new key enters here: no weak one is announced or believed (``weak_key``).
        crypto.check_signing_public(c.new_signing_public, f"key change of {c.node} new key")
        if crypto.signing_key_id(c.new_signing_public) == c.old_key_id:
            raise Malformed("the new key is the old key")
    if c.serial < 1:
        raise Malformed("key change serials start at 1")
    if not isinstance(c.reason, str) or not c.reason.strip() \
            or len(c.reason) > MAX_REASON_CHARS:
        raise Malformed(f"key change reason must be 1-{MAX_REASON_CHARS} characters")


def _change(body: bytes) -> KeyChange:
    d = codec.exact_map("key change", codec.unpack(body, what="key change",
                                                   max_bytes=MAX_STATEMENT_BYTES), _FIELDS)
    try:
        kind = Kind(d["kind"])
    except ValueError as exc:
        raise Malformed("key change kind must be rotate, replace or revoke") from exc
    new = d["new_signing_public"]
    change = KeyChange(
        kind=kind,
        node=check_node_id(d["node"], what="key change node"),
        old_key_id=codec.exact_bytes(d["old_key_id"], crypto.KEY_ID_BYTES, "old_key_id"),
        new_signing_public=None if new is None else codec.exact_bytes(
            new, crypto.PUBLIC_KEY_BYTES, "new_signing_public"),
        serial=codec.small_int(d["serial"], "serial"),
        issued=codec.small_int(d["issued"], "issued"),
        reason=d["reason"] if isinstance(d["reason"], str) else "",
    )
    check_change(change)
    return change


# --- what an officer's client believes ---------------------------------------------------


def reader_threshold(other_nodes_held: int) -> int:
    """The co-signatures an officer's client requires for a node key change: the network's
    default (2), or fewer only when the client holds keys for fewer other national nodes
    (a two-node network). A client does not learn a node's configured threshold: a number
    served by the node could be lowered by whoever forges for it; a network run below the
    default has clients stricter than its peers (docs/protocol.md §19)."""
    return max(1, min(DEFAULT_THRESHOLD, other_nodes_held))


def follow(node: str, chain: list[bytes], held: bytes,
           cosigner_keys: Mapping[str, bytes], threshold: int) -> tuple[bytes, list[Verified]]:
    """From the key a reader already holds for ``node``, the key its co-signed changes
    lead to, and the changes applied on the way.

    The chain may start before the held key (a reader who learnt the key late): changes
    until the first rotation or replacement of ``held`` are history and skipped. From
    there on every change must verify (``verify``: threshold under ``cosigner_keys``, the
    node's own signature, the next serial); a bad one raises and nothing is believed.
    """
    if len(chain) > MAX_CHAIN:
        raise Malformed(f"at most {MAX_CHAIN} key changes per node")
    decoded = sorted((decode(raw).change.serial, raw) for raw in chain)
    current, last, applied = held, None, []
    for serial, raw in decoded:
        if last is None:
            change = decode(raw).change
            if change.kind is Kind.REVOKE or change.old_key_id != crypto.signing_key_id(
                    current):
                continue  # before the key the reader holds
        verified = verify(raw, subject_key=current, cosigner_keys=cosigner_keys,
                          threshold=threshold, last_serial=last, expected_node=node)
        if verified.change.new_signing_public is not None:
            current = verified.change.new_signing_public
        applied.append(verified)
        last = serial
    return current, applied


def is_key_change(raw: bytes) -> bool:
    """A node key revocation in the co-signed format (four elements), as opposed to the
    three-element revocation a home node signs for its officers."""
    try:
        split(raw)
    except LiaisonError:
        return False
    return True
