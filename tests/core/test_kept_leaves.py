"""What an own checkpoint keeps of its leaves (``core/kept_leaves.py``): subtree roots that
hash to the signed root whatever the checkpoints' sizes, a mark per leaf that names the
first one a rewrite changed, rows of before schema 20 (full leaves) read as the same log,
and a rewrite of what was kept is caught, never believed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import merkle
from liaison_net.core.kept_leaves import BLOCK, MARK_BYTES, KeptLeaves, keep


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def _sizes(draw_steps: list[int]) -> list[int]:
    out, size = [], 0
    for step in draw_steps:
        size += step
        out.append(size)
    return out


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(1, 150), min_size=1, max_size=6),
       full_rows=st.integers(0, 6))
def test_kept_subtrees_hash_to_the_root_at_every_size(steps: list[int], full_rows: int) -> None:
    sizes = _sizes(steps)
    original = _leaves(sizes[-1])
    log, kept, since = merkle.MerkleLog(original), KeptLeaves(), 0
    for i, size in enumerate(sizes):
        if i < full_rows:  # a row written before schema 20: every leaf in full
            assert kept.add(size, log.leaves(since, size), None)
        else:
            assert kept.add(size, None, keep(log, since, size))
        assert kept.size == size and kept.root() == merkle.root(original[:size])
        assert kept.first_difference(original) is None
        since = size


def test_every_size_up_to_a_few_blocks_and_its_cost() -> None:
    original = _leaves(5 * BLOCK + 1)
    log = merkle.MerkleLog(original)
    for size in range(1, len(original) + 1):
        kept = KeptLeaves()
        blob = keep(log, 0, size)
        assert kept.add_kept(size, blob) and kept.root() == log.root(size), size
        tail = bin(size % BLOCK).count("1")
        assert len(blob) == 8 + size * MARK_BYTES + 32 * (size // BLOCK + tail)
    # 1,000 entries a checkpoint (the default): about 3 bytes per entry, not 32.
    big = merkle.MerkleLog(_leaves(3000))
    assert len(keep(big, 2000, 3000)) / 1000 < 3


def test_a_rewrite_is_named_at_its_first_entry_across_old_and_new_rows() -> None:
    original = _leaves(700)
    log, kept = merkle.MerkleLog(original), KeptLeaves()
    assert kept.add(130, log.leaves(0, 130), None)  # before schema 20
    assert kept.add(500, None, keep(log, 130, 500))
    assert kept.add(700, None, keep(log, 500, 700))
    # 700 = 10 blocks of 64, then subtrees of 32, 16, 8 and 4 (the tail).
    for at, (start, end) in {0: (0, 64), 63: (0, 64), 64: (64, 128), 129: (128, 192),
                             130: (128, 192), 131: (128, 192), 499: (448, 512),
                             640: (640, 672), 699: (696, 700)}.items():
        local = [*original[:at], *_leaves(700 - at, b"rewritten")]
        assert kept.first_difference(local) == (start, end, at), at
    # Cut short: the first missing entry.
    assert kept.first_difference(original[:333]) == (320, 384, 333)


def test_what_was_kept_rewritten_is_not_believed() -> None:
    original = _leaves(300)
    log = merkle.MerkleLog(original)
    blob = bytearray(keep(log, 0, 300))
    root = log.root(300)
    # A block root changed: the kept subtrees no longer hash to the signed root.
    forged = bytearray(blob)
    forged[8 + 300 * MARK_BYTES] ^= 1
    kept = KeptLeaves()
    assert kept.add_kept(300, bytes(forged)) and kept.root() != root
    # A mark changed: the root still holds, so the name can move, but only within the
    # block the roots show differs.
    local = [*original[:100], *_leaves(200, b"rewritten")]
    for i in range(64, 128):
        off = 8 + i * MARK_BYTES
        forged = bytearray(blob)
        forged[off:off + MARK_BYTES] = local[i][:MARK_BYTES]
        kept = KeptLeaves()
        assert kept.add_kept(300, bytes(forged)) and kept.root() == root
        found = kept.first_difference(local)
        assert found is not None and found[:2] == (64, 128)
        assert found[2] is not None and 64 <= found[2] < 128
    # Every mark of that block rewritten to match: no name, only the block.
    forged = bytearray(blob)
    for i in range(64, 128):
        forged[8 + i * MARK_BYTES:8 + (i + 1) * MARK_BYTES] = local[i][:MARK_BYTES]
    kept = KeptLeaves()
    assert kept.add_kept(300, bytes(forged)) and kept.first_difference(local) == (64, 128, None)
    # Rows that do not continue the log, or are cut, end what is known; nothing raises.
    kept = KeptLeaves()
    assert not kept.add_kept(300, bytes(blob[:-1]))
    assert not kept.add_kept(300, b"")
    assert not kept.add_kept(299, bytes(blob))
    assert not kept.add(300, None, None)
    assert kept.add_kept(300, bytes(blob))
    assert not kept.add_kept(400, keep(merkle.MerkleLog(_leaves(400)), 200, 400))
    assert not kept.add_full(301, original[0])  # an old row after a new one


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(-5, 400), st.binary(max_size=700), st.booleans()),
                     max_size=6))
def test_any_rows_read_without_raising(rows: list[tuple[int, bytes, bool]]) -> None:
    """The rows are as whoever can write the database left them: never a crash."""
    kept = KeptLeaves()
    log = merkle.MerkleLog(_leaves(400))
    for size, blob, new in rows:
        if new and kept.size < size <= 400 and blob[:1] == b"\x00":  # now and then valid
            blob = keep(log, kept.size, size)
        if kept.add(size, None if new else blob, blob if new else None):
            assert kept.size == size and kept.root() is not None
            kept.first_difference(_leaves(size, b"other"))


def test_two_rows_signed_from_the_same_previous_size_leave_the_later_ones_readable() -> None:
    """Two workers of a node both signed from the checkpoint of 100 (one 150, one 170);
    the later rows continue from 170: those are read, 150 is left out."""
    original = _leaves(400)
    log = merkle.MerkleLog(original)
    rows: list[tuple[int, bytes | None, bytes | None]] = [
        (64, log.leaves(0, 64), None), (100, None, keep(log, 64, 100)),
        (150, None, keep(log, 100, 150)), (170, None, keep(log, 100, 170)),
        (300, None, keep(log, 170, 300)), (400, None, keep(log, 300, 400))]
    for size in (64, 100, 150, 170, 300, 400):
        kept = KeptLeaves.up_to(rows, size)
        assert kept.size == size and kept.root() == log.root(size), size
    # Rows that lead nowhere, back to themselves or forward are never believed; no raise.
    hostile: list[tuple[int, bytes | None, bytes | None]] = [
        (400, None, (400).to_bytes(8, "big")), (300, None, (500).to_bytes(8, "big")),
        (200, None, b"\x00"), (100, b"\x00" * 31, None), (50, None, None)]
    for size in (400, 300, 200, 100, 50, 0, -1, 10**30):
        assert KeptLeaves.up_to(hostile, size).size == 0
    assert KeptLeaves.up_to([*rows[:3], (170, None, keep(log, 150, 170))], 170).size == 170
    assert KeptLeaves.up_to(rows[1:], 400).size == 0  # the first row gone: nothing reaches 0


def test_where_a_row_before_schema_20_kept_full_leaves_a_kept_mark_does_not_hide_a_change() -> None:
    """Entry 40 rewritten so that its leaf keeps the original's 2-byte mark (65,536 tries
    of its text): where the full leaf was kept (rows before schema 20) under a root kept
    from it, it is still named, not the entry after. Entries 64 to 99 were kept in full
    too, but their block's root is the next row's: there, as past them, only the marks
    count (the full leaves could be rewritten unseen)."""
    original = _leaves(300)
    log, kept = merkle.MerkleLog(original), KeptLeaves()
    assert kept.add(100, log.leaves(0, 100), None)
    assert kept.add(300, None, keep(log, 100, 300))
    assert [kept.holds_leaf(i) for i in (-1, 0, 63, 64, 99, 299)] == [
        False, True, True, False, False, False]
    for at, named in ((40, 40), (63, 63), (64, 65), (99, 100), (150, 151)):
        local = [*original[:at], original[at][:MARK_BYTES] + b"\xee" * 30,
                 *_leaves(300 - at - 1, b"rewritten")]
        found = kept.first_difference(local)
        assert found is not None and found[2] == named, at
    # Rows before schema 20 alone: every leaf is under the roots kept from them.
    only_full = KeptLeaves()
    assert only_full.add(100, log.leaves(0, 100), None) and only_full.holds_leaf(99)
