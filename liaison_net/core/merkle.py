"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashes and inclusion proofs.

A tree over n leaves hashes each leaf as SHA-256(0x00 || data) and each inner node as
SHA-256(0x01 || left || right), the split at the largest power of two below n (§2.1.1), so
a leaf can never pass for an inner node. ``inclusion_proof`` is PATH(m, D[n]) (§2.1.3.1);
``verify_inclusion`` is the verifier of §2.1.3.2 and returns False, never raises, for any
proof that does not lead to the root. ``consistency_proof`` is PROOF(m, D[n]) (§2.1.4.1)
and ``verify_consistency`` its verifier (§2.1.4.2): a tree of m leaves is a prefix of the
tree of n leaves, so a log that shows two roots cannot have rewritten what the first one
covered (the audit log's checkpoints, ``core.checkpoint``). Pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_BYTES = 32


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inner_hash(left: bytes, right: bytes) -> bytes:
    """An inner node over two subtree roots (for trees rebuilt from kept subtrees)."""
    return _node(left, right)


def split_point(n: int) -> int:
    """Where the tree over ``n`` leaves (n > 1) splits: the largest power of two below n."""
    return _split(n)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over the leaf hashes ``leaves`` (at least one).

    Level by level, pairing neighbours and lifting a last odd node as it is: the same tree
    as §2.1.1's split at the largest power of two (its left part is always a complete
    subtree, so every level pairs exactly its nodes), without the recursion's slices (a
    batch of 250 statements: 2.4 -> 1.4 µs a leaf, docs/performance.md, lane dest16;
    tests/core/test_merkle.py compares it with the recursive definition)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, leaves): the sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index outside the tree")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     expected_root: bytes) -> bool:
    """True only if ``proof`` shows leaf hash ``leaf`` at ``index`` of a tree of ``size``
    leaves whose root is ``expected_root`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size or any(len(p) != HASH_BYTES for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, leaves): what shows the tree of the first ``old_size`` leaves is a
    prefix of the tree of all of them (empty when the sizes are equal)."""
    if not 0 < old_size <= len(leaves):
        raise ValueError("the old size must be between 1 and the tree's size")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1; ``whole`` is b: the old tree is this
    whole subtree, whose root the verifier already holds."""
    n = len(leaves)
    if m == n:
        return [] if whole else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """True only if ``proof`` shows the tree of ``old_size`` leaves with root ``old_root``
    is a prefix of the tree of ``new_size`` leaves with root ``new_root`` (RFC 9162
    §2.1.4.2). Equal sizes need an empty proof and equal roots. Never raises."""
    if not 0 < old_size <= new_size or any(len(p) != HASH_BYTES for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class MerkleLog:
    """The leaf hashes of an append-only log, for roots and proofs at any of its sizes.

    The lists above hash every leaf again for each root or proof: O(n), too much for a log
    that signs a checkpoint every thousand entries of millions. Here every root of an
    aligned, complete subtree of at least ``2**CACHED_LEVEL`` leaves is remembered once
    computed (such a subtree never changes in an append-only log), so a root or a proof
    costs about ``2**CACHED_LEVEL * log2(n)`` hashes, and memory is one hash per
    ``2**(CACHED_LEVEL - 1)`` leaves besides the leaves themselves (32 bytes each).
    """

    CACHED_LEVEL = 6

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self._data = bytearray()
        self._cache: dict[tuple[int, int], bytes] = {}
        for leaf in leaves:
            self.append(leaf)

    def __len__(self) -> int:
        return len(self._data) // HASH_BYTES

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_BYTES:
            raise ValueError("a leaf hash is 32 bytes")
        self._data += leaf

    def leaf(self, index: int) -> bytes:
        return bytes(self._data[index * HASH_BYTES:(index + 1) * HASH_BYTES])

    def leaves(self, start: int, end: int) -> bytes:
        """Leaves ``start`` to ``end`` (exclusive), concatenated."""
        return bytes(self._data[start * HASH_BYTES:end * HASH_BYTES])

    def subtree_root(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), a subtree of the log's tree: ``start`` a multiple of
        the largest power of two in ``end - start`` (what a checkpoint keeps of its tree)."""
        if not 0 <= start < end <= len(self):
            raise ValueError("subtree outside the log")
        return self._range(start, end)

    def _range(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end); ``start`` is a multiple of the subtree's largest
        power-of-two part, as every subtree the RFC's recursion visits is."""
        n = end - start
        if n == 1:
            return self.leaf(start)
        if n & (n - 1) == 0 and n >= 1 << self.CACHED_LEVEL:
            key = (n.bit_length() - 1, start // n)
            cached = self._cache.get(key)
            if cached is None:
                half = start + n // 2
                cached = self._cache[key] = _node(self._range(start, half),
                                                  self._range(half, end))
            return cached
        k = _split(n)
        return _node(self._range(start, start + k), self._range(start + k, end))

    def _check_size(self, size: int) -> None:
        if not 0 < size <= len(self):
            raise ValueError("size outside the log")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        size = len(self) if size is None else size
        self._check_size(size)
        return self._range(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]), as ``inclusion_proof`` over the first ``size`` leaves."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError("leaf index outside the tree")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if index < k:
            return [*self._path(index, start, start + k), self._range(start + k, end)]
        return [*self._path(index - k, start + k, end), self._range(start, start + k)]

    def consistency_proof(self, old_size: int, size: int) -> list[bytes]:
        """PROOF(old_size, D[size]), as ``consistency_proof`` over the first ``size``."""
        self._check_size(size)
        if not 0 < old_size <= size:
            raise ValueError("the old size must be between 1 and the tree's size")
        return self._subproof(old_size, 0, size, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self._range(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self._range(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._range(start, start + k)]
