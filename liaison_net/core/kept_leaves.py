"""What a node keeps of its own audit log's Merkle leaves beside each checkpoint, so that
`audit verify` can name the first entry a rewrite changed: about 3 bytes per entry.

The leaves are the audit rows' chain hashes (``checkpoint.leaf``), so the running node
derives them from the rows. What the rows cannot give is what they *were*, and that is what
is wanted once someone rewrote them. Until schema 20 each own checkpoint kept every leaf it
added (32 bytes per entry, the audit hash a second time). Now its row keeps (``keep``):

    since   8 bytes, big-endian: the size of the previous own checkpoint, p
    marks   the first MARK_BYTES of each leaf added, p to n
    blocks  the root of each aligned block of BLOCK leaves completed in (p, n]
    tail    the roots of the perfect subtrees the leaves after the last complete block
            make at n, largest first (one for each bit set in n % BLOCK)

Blocks and tail are inner nodes of the RFC 9162 tree of size n, so they hash to the signed
root (``KeptLeaves.root``): that is how `verify` knows they are the original log's, not a
rewrite's. The first block (or tail subtree) whose root the rows no longer give holds the
first change, and in it the first leaf whose mark differs is named. The marks are not under
the root: a rewrite of them can move the name only within that block (at most BLOCK
entries), and a changed leaf keeps its 2-byte mark by chance once in 65,536 (then a later
entry of the block is named). Rows written before schema 20 keep their full leaves; the
two kinds read as one log (``KeptLeaves.add_full``, ``add_kept``), and where a full leaf is
under a root kept from it (``holds_leaf``) it, not its mark, tells the changed entry: that
name is then as authenticated as the root.

Rows are as an operator with write access left them: nothing here raises on what it reads;
a row that does not continue the log ends what is known (``add_*`` return False). They are
chained back from the checkpoint checked (``KeptLeaves.up_to``), each to the size it says it
follows: two workers may both have signed from the same one, and only one of those rows
leads on.
"""

from __future__ import annotations

from collections.abc import Sequence

from liaison_net.core import merkle

BLOCK = 64  # = merkle.MerkleLog's cached subtrees: keeping a block costs no hashing
MARK_BYTES = 2
_SINCE_BYTES = 8
_H = merkle.HASH_BYTES


def mark(leaf: bytes) -> bytes:
    return leaf[:MARK_BYTES]


def _tail_subtrees(size: int) -> list[tuple[int, int]]:
    """(start, length) of the perfect subtrees after the last complete block, largest
    first: the tree's own decomposition of its size into powers of two, below BLOCK."""
    start, rest, out = size - size % BLOCK, size % BLOCK, []
    bit = BLOCK >> 1
    while bit:
        if rest & bit:
            out.append((start, bit))
            start += bit
        bit >>= 1
    return out


def _since(size: int, leaves: bytes | None, kept: bytes | None) -> int | None:
    """The size of the checkpoint a row says it follows (None: it says none)."""
    if kept is not None:
        return int.from_bytes(kept[:_SINCE_BYTES], "big") if len(kept) >= _SINCE_BYTES else None
    if leaves is not None and len(leaves) % _H == 0:
        return size - len(leaves) // _H
    return None


def keep(log: merkle.MerkleLog, since: int, size: int) -> bytes:
    """The row's blob for an own checkpoint of ``size`` entries, the previous at ``since``."""
    if not 0 <= since < size <= len(log):
        raise ValueError("a checkpoint keeps the leaves it added: since < size <= the log")
    leaves = log.leaves(since, size)
    marks = bytearray((size - since) * MARK_BYTES)
    for b in range(MARK_BYTES):  # byte b of every mark at once (strided slices, in C)
        marks[b::MARK_BYTES] = leaves[b::_H]
    blocks = b"".join(log.subtree_root(j * BLOCK, (j + 1) * BLOCK)
                      for j in range(since // BLOCK, size // BLOCK))
    tail = b"".join(log.subtree_root(s, s + n) for s, n in _tail_subtrees(size))
    return since.to_bytes(_SINCE_BYTES, "big") + bytes(marks) + blocks + tail


class KeptLeaves:
    """A log's kept leaves read back, own checkpoint rows in order of size: what they say
    of the original log up to ``size``."""

    def __init__(self) -> None:
        self.size = 0
        self._marks = bytearray()
        self._blocks: list[bytes] = []
        self._tail: list[bytes] = []  # roots of _tail_subtrees(size)
        self._partial: list[bytes] | None = []  # full leaves after the last block, if held
        #: The leaves rows before schema 20 kept in full, as far as the roots kept are
        #: computed from them (so they are the original's once ``root`` matched).
        self._full = bytearray()

    @classmethod
    def up_to(cls, rows: Sequence[tuple[int, bytes | None, bytes | None]],
              size: int) -> KeptLeaves:
        """What the own checkpoint rows ``(size, leaves, kept)`` keep of the log up to
        ``size``: the rows read back from the one of that size, each to the one its
        previous size names. Two workers of a node may both sign from the same previous
        checkpoint: of the two rows only the one the later rows continue is read, the other
        is left out. Nothing that does not reach 0 is believed (an empty one then)."""
        by_size = {row[0]: row for row in rows if type(row[0]) is int}
        chain: list[tuple[int, bytes | None, bytes | None]] = []
        at = size
        while at > 0 and at in by_size and len(chain) < len(by_size):
            row = by_size[at]
            since = _since(*row)
            if since is None or not 0 <= since < at:
                break
            chain.append(row)
            at = since
        kept = cls()
        if at != 0:
            return kept
        for row in reversed(chain):
            if not kept.add(*row):
                return cls()
        return kept

    def add(self, size: int, leaves: bytes | None, kept: bytes | None) -> bool:
        """One own checkpoint row (``kept`` since schema 20, else full ``leaves``)."""
        if kept is not None:
            return self.add_kept(size, kept)
        return leaves is not None and self.add_full(size, leaves)

    def add_full(self, size: int, leaves: bytes) -> bool:
        """A row written before schema 20: every leaf it added, in full."""
        if (size - self.size) * _H != len(leaves) or size <= self.size or self._partial is None:
            return False
        partial = self._partial
        self._full += leaves
        for i in range(0, len(leaves), _H):
            leaf = leaves[i:i + _H]
            self._marks += mark(leaf)
            partial.append(leaf)
            if len(partial) == BLOCK:
                self._blocks.append(merkle.root(partial))
                partial.clear()
        self.size = size
        self._tail = []
        offset = 0
        for _, n in _tail_subtrees(size):
            self._tail.append(merkle.root(partial[offset:offset + n]))
            offset += n
        return True

    def add_kept(self, size: int, kept: bytes) -> bool:
        """A row of schema 20 or later (``keep``)."""
        since = int.from_bytes(kept[:_SINCE_BYTES], "big")
        if since != self.size or size <= since:
            return False
        blocks = size // BLOCK - since // BLOCK
        tail = _tail_subtrees(size)
        marks_end = _SINCE_BYTES + (size - since) * MARK_BYTES
        blocks_end = marks_end + blocks * _H
        if len(kept) != blocks_end + len(tail) * _H:
            return False
        self._marks += kept[_SINCE_BYTES:marks_end]
        self._blocks += [kept[i:i + _H] for i in range(marks_end, blocks_end, _H)]
        self._tail = [kept[i:i + _H] for i in range(blocks_end, len(kept), _H)]
        self._partial = None  # the leaves themselves are no longer all here
        # The open block's root comes from this row now, not from the full leaves in it.
        del self._full[since // BLOCK * BLOCK * _H:]
        self.size = size
        return True

    def _subtrees(self) -> list[tuple[int, int, bytes]]:
        """(start, length, root) of every kept subtree, in order: blocks, then the tail."""
        out = [(j * BLOCK, BLOCK, r) for j, r in enumerate(self._blocks)]
        return out + [(s, n, r) for (s, n), r in zip(_tail_subtrees(self.size), self._tail,
                                                       strict=True)]

    def root(self) -> bytes | None:
        """The root of the tree of ``size`` leaves, from the kept subtrees alone."""
        if self.size == 0:
            return None
        known = {(s, n): r for s, n, r in self._subtrees()}

        def over(start: int, end: int) -> bytes:
            got = known.get((start, end - start))
            if got is not None:
                return got
            k = merkle.split_point(end - start)  # a tree's subtrees >= BLOCK are blocks
            return merkle.inner_hash(over(start, start + k), over(start + k, end))

        return over(0, self.size)

    def first_difference(self, local: Sequence[bytes], *,
                         known_good: int = 0) -> tuple[int, int, int | None] | None:
        """Where ``local`` leaves part from the kept ones: (start, end, named), the first
        kept subtree whose root they no longer give (the first change is in it), cut to
        begin at ``known_good`` (a prefix a witnessed root already showed unchanged), and
        in it the first leaf whose mark differs (None if no mark does). None if every kept
        root matches. Believe the subtree only once ``root`` matched a signed checkpoint;
        ``named`` rests on the marks, which no signature covers: a rewritten mark must not
        name an entry a signed root shows unchanged."""
        for start, n, kept_root in self._subtrees():
            if len(local) < start + n or merkle.root(local[start:start + n]) != kept_root:
                end = start + n
                start = max(start, min(known_good, end - 1))
                for i in range(start, end):
                    if i >= len(local) or self._differs(i, local[i]):
                        return start, end, i
                return start, end, None
        return None

    def holds_leaf(self, i: int) -> bool:
        """Leaf ``i`` is kept in full under the kept roots: once ``root`` matched a signed
        checkpoint, a name there is as authenticated as the root (not a mark's word)."""
        return i >= 0 and (i + 1) * _H <= len(self._full)

    def _differs(self, i: int, leaf: bytes) -> bool:
        """Leaf ``i`` is not the original: the full leaf where a row before schema 20 kept
        it (a leaf that keeps its mark is still told apart there), else its mark."""
        if self.holds_leaf(i):
            return leaf != self._full[i * _H:(i + 1) * _H]
        return mark(leaf) != self._marks[i * MARK_BYTES:(i + 1) * MARK_BYTES]
