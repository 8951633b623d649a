"""The checkpoint service on real SQLite stores, two nodes joined in memory: NL signs
checkpoints as its log grows, BE witnesses them (asking for a consistency proof), NL keeps
the cosignatures and finds them again after a restart; `[audit]` in the config."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.clock import ManualClock
from liaison_net.config import AuditConfig
from liaison_net.core import checkpoint as cp
from liaison_net.core import crypto, merkle
from liaison_net.core.audit import detail
from liaison_net.core.kept_leaves import KeptLeaves
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.errors import BadSignature, ConfigError, UnknownKey
from liaison_net.metrics import NodeMetrics
from liaison_net.services.checkpoints import AuditCheckpoints
from liaison_net.services.intake import Keys
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW

NL_KEY = crypto.signing_key_from_seed(b"\x11" * 32)
BE_KEY = crypto.signing_key_from_seed(b"\x22" * 32)
LU_KEY = crypto.signing_key_from_seed(b"\x33" * 32)
BASE = {"node": {"id": "nl", "data_dir": "data", "cert_dir": "certs"},
        "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"}}


def test_audit_config_has_bounds(tmp_path: Path) -> None:
    path = tmp_path / "nl.toml"
    assert config.parse(BASE, path).audit == AuditConfig(1000, 300.0)
    got = config.parse({**BASE, "audit": {"checkpoint_every": 5, "checkpoint_seconds": 0.5}},
                       path).audit
    assert got == AuditConfig(5, 0.5)
    for bad in ({"checkpoint_every": 0}, {"checkpoint_seconds": 0}, {"every": 3}):
        with pytest.raises(ConfigError, match="audit"):
            config.parse({**BASE, "audit": bad}, path)


async def _service(tmp_path: Path, node: str, clock: ManualClock,
                   every: int = 3) -> AuditCheckpoints:
    store = NodeStore(tmp_path / f"{node}.sqlite3", node)
    await store.open()
    all_keys = {"nl": NL_KEY, "be": BE_KEY, "lu": LU_KEY}
    keys = Keys(own=all_keys[node], nodes={n: k.public for n, k in all_keys.items()})
    service = AuditCheckpoints(node_id=node, store=store, keys=keys,
                               config=AuditConfig(every, 3600.0),
                               peers=[n for n in all_keys if n != node],
                               metrics=NodeMetrics(), limits=DEFAULT_LIMITS, clock=clock)
    await service.start()
    return service


async def _entries(service: AuditCheckpoints, n: int, clock: ManualClock) -> None:
    for i in range(n):
        await service.store.audit(now=clock.now_ms(), event="test.entry", actor="nl/x",
                                  audit_detail=detail(i=i))


async def _offer(origin: AuditCheckpoints, witness: AuditCheckpoints,
                 seen: list[bytes] | None = None) -> cp.Verdict:
    """What the publisher does, without the network: offer, prove if asked, keep."""
    signed = await origin.current()
    assert signed is not None
    sizes: tuple[int, ...] = (origin.cosigned.get(witness.node_id, 0),)
    for _ in range(2):
        size = signed.checkpoint.size
        answer = await witness.witness(
            origin.node_id, checkpoint=signed.raw,
            proofs={s: origin.proof(s, size) for s in sizes if 0 < s < size}, seen=seen or [])
        if answer.verdict is cp.Verdict.NEED_PROOF:
            sizes = answer.proof_from
            continue
        if answer.verdict is cp.Verdict.WITNESSED:
            await origin.cosigned_by(witness.node_id, signed, answer.cosignature)
        return answer.verdict
    raise AssertionError("asked for a proof twice")


async def test_checkpoints_are_witnessed_as_the_log_grows(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    nl, be = await _service(tmp_path, "nl", clock), await _service(tmp_path, "be", clock)
    try:
        assert await nl.current() is None  # an empty log has nothing to sign
        await _entries(nl, 4, clock)
        assert await _offer(nl, be) is cp.Verdict.WITNESSED
        assert nl.cosigned["be"] == 4
        for grow in (2, 3, 7):  # 2 is below checkpoint_every: no new checkpoint yet
            await _entries(nl, grow, clock)
            assert await _offer(nl, be) is cp.Verdict.WITNESSED
        assert nl.cosigned["be"] == 16
        held = await be.store.checkpoints.latest("nl")
        assert held is not None and held.size == 16 and "be" in held.cosignatures
        # The origin keeps every checkpoint with what it keeps of the leaves it added (4 + 5
        # + 7 = 16): read back in order, it hashes to each signed root.
        own = await nl.store.checkpoints.of("nl")
        assert [c.size for c in own] == [16, 9, 4]
        assert all(c.leaves is None and c.kept is not None for c in own)
        kept = KeptLeaves()
        for c in reversed(own):
            assert kept.add(c.size, c.leaves, c.kept) and kept.root() == c.root
        # A restart finds its latest checkpoint and what BE cosigned.
        await nl.store.close()
        nl = await _service(tmp_path, "nl", clock)
        assert nl.cosigned["be"] == 16
        await _entries(nl, 3, clock)
        assert await _offer(nl, be) is cp.Verdict.WITNESSED and nl.cosigned["be"] == 19
    finally:
        await nl.store.close()
        await be.store.close()


async def test_a_cosignature_is_kept_only_if_it_verifies(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    nl = await _service(tmp_path, "nl", clock)
    try:
        await _entries(nl, 3, clock)
        signed = await nl.current()
        assert signed is not None
        forged = cp.cosign(signed, witness="be", key=NL_KEY, at=NOW)  # not BE's key
        with pytest.raises(BadSignature):
            await nl.cosigned_by("be", signed, forged.to_wire())
        assert nl.cosigned.get("be", 0) == 0
        del nl.keys.nodes["be"]
        with pytest.raises(UnknownKey):
            await nl.cosigned_by("be", signed, forged.to_wire())
    finally:
        await nl.store.close()


async def test_two_logs_shown_at_different_sizes_are_caught(tmp_path: Path) -> None:
    """NL shows BE one log and LU a longer, different one. When LU hears of BE's checkpoint
    (BE's own offer carries it), NL's next checkpoint at LU must prove it extends it too."""
    clock = ManualClock(NOW)
    be, lu = await _service(tmp_path, "be", clock), await _service(tmp_path, "lu", clock)

    def leaves(n: int, tag: bytes) -> list[bytes]:
        return [merkle.leaf_hash(tag + bytes([i])) for i in range(n)]

    async def show(witness: AuditCheckpoints, log: list[bytes],
                   proofs_from: tuple[int, ...] = ()) -> cp.Verdict | tuple[int, ...]:
        signed = cp.sign_checkpoint(cp.Checkpoint("nl", len(log), merkle.root(log), NOW),
                                    NL_KEY)
        answer = await witness.witness(
            "nl", checkpoint=signed.raw, seen=[],
            proofs={m: merkle.consistency_proof(m, log) for m in proofs_from})
        return answer.proof_from or answer.verdict

    try:
        base = leaves(6, b"base")
        fork_be, fork_lu = [*base, *leaves(3, b"be")], [*base, *leaves(5, b"lu")]
        for witness in (be, lu):
            assert await show(witness, base) is cp.Verdict.WITNESSED
        assert await show(be, fork_be, (6,)) is cp.Verdict.WITNESSED
        assert await show(lu, fork_lu, (6,)) is cp.Verdict.WITNESSED
        # BE's offer to LU carries what BE witnessed of NL: LU keeps it as heard (no size
        # of LU's matches, so no alarm yet).
        await lu._compare_notes("be", await be.seen(), NOW)
        assert await lu.store.checkpoints.alarms() == []
        grown = [*fork_lu, *leaves(1, b"more")]
        assert await show(lu, grown, (11,)) == (9,)  # prove you extend what BE was shown
        assert await show(lu, grown, (11, 9)) is cp.Verdict.INCONSISTENT
        assert [(a.node, a.verdict) for a in await lu.store.checkpoints.alarms()] == [
            ("nl", "inconsistent")]
        # BE, told of LU's checkpoint of the same size as one it holds: a split view.
        grown_be = [*fork_be, *leaves(2, b"be2")]
        assert await show(be, grown_be, (9,)) is cp.Verdict.WITNESSED
        await be._compare_notes("lu", await lu.seen(), NOW)  # LU's latest: fork_lu, 11
        assert [(a.node, a.verdict) for a in await be.store.checkpoints.alarms()] == [
            ("nl", "split_view")]
    finally:
        await be.store.close()
        await lu.store.close()


async def test_two_workers_signing_from_the_same_checkpoint_leave_the_log_nameable(
        tmp_path: Path) -> None:
    """Two workers of NL on one database: each caught up with the checkpoint of 10, then
    both signed (20 and 25, each from 10). Every later checkpoint still reads back, with
    what it keeps, to its signed root (so `audit verify` can name a changed entry)."""
    clock = ManualClock(NOW)
    one = await _service(tmp_path, "nl", clock, every=10)
    two = await _service(tmp_path, "nl", clock, every=10)
    try:
        await _entries(one, 10, clock)
        assert (await one.current()) is not None and (await two.current()) is not None
        await _entries(one, 10, clock)
        await one._catch_up_with_other_workers()
        await two._catch_up_with_other_workers()  # both: the latest is 10
        await one.checkpoint_now()
        await _entries(one, 5, clock)
        await two.checkpoint_now()
        for service in (one, two, one):
            await _entries(service, 10, clock)
            await service.current()
        rows = [(c.size, c.leaves, c.kept) for c in await one.store.checkpoints.of("nl")]
        assert sorted(r[0] for r in rows) == [10, 20, 25, 35, 45, 55]
        for stored in await one.store.checkpoints.of("nl"):
            kept = KeptLeaves.up_to(rows, stored.size)
            assert kept.size == stored.size and kept.root() == stored.root, stored.size
    finally:
        await one.store.close()
        await two.store.close()


async def test_cells_of_any_type_read_as_no_blob_never_a_crash(tmp_path: Path) -> None:
    """SQLite keeps whatever type is written to a cell: someone who rewrote the file may
    leave a text, a real or a huge integer where a blob belongs (``bytes(10**12)`` would
    try to allocate a terabyte). `audit verify` reads such rows as holding nothing."""
    path = tmp_path / "nl.sqlite3"
    store = NodeStore(path, "nl")
    await store.open()
    await store.close()
    odd: list[object] = ["text", 10**12, 3.5, -1]
    with sqlite3.connect(path) as db:
        for size, value in enumerate(odd, start=1):
            db.execute("INSERT INTO checkpoints (node, size, root, at, signed, leaves, kept, "
                       "received) VALUES ('nl', ?, ?, 0, ?, ?, ?, 0)",
                       (size, value, value, value, value))
            db.execute("INSERT INTO cosignatures (node, size, witness, cosignature, at) "
                       "VALUES ('nl', ?, 'be', ?, 0)", (size, value))
        db.execute("INSERT INTO checkpoints (node, size, root, at, signed, kept, received) "
                   "VALUES ('nl', 'five', x'00', 0, x'00', x'00', 0)")
    store = NodeStore(path, "nl")
    await store.open()
    try:
        rows = await store.checkpoints.of("nl")
    finally:
        await store.close()
    assert len(rows) == len(odd) + 1
    for row in rows:
        if row.size != "five":
            assert (row.root, row.signed, row.leaves, row.kept, row.cosignatures) == (
                b"", b"", None, None, {"be": b""})
    for size in range(len(odd) + 2):
        assert KeptLeaves.up_to([(r.size, r.leaves, r.kept) for r in rows], size).size == 0


async def test_two_workers_signing_the_same_size_offer_the_one_the_store_kept(
        tmp_path: Path) -> None:
    """Both workers of NL signed the size 5 (at other times): the store keeps the first
    row and ignores the second. Each worker offers the kept one, so BE's cosignature,
    whichever worker asked last, verifies against the row `audit verify` reads."""
    clock = ManualClock(NOW)
    one = await _service(tmp_path, "nl", clock, every=5)
    two = await _service(tmp_path, "nl", clock, every=5)
    be = await _service(tmp_path, "be", clock, every=5)
    try:
        await _entries(one, 5, clock)
        first = await one.checkpoint_now()
        clock.advance(1000)
        second = await two.checkpoint_now()  # it had not caught up with one's
        assert first is not None and second is not None and second.raw == first.raw
        assert await _offer(one, be) is cp.Verdict.WITNESSED
        assert await _offer(two, be) is cp.Verdict.WITNESSED
        row = await one.store.checkpoints.latest("nl")
        assert row is not None and row.size == 5
        _, witnesses = cp.witnessed_by(row.signed, row.cosignatures, {"be": [BE_KEY.public]})
        assert witnesses == ["be"]
    finally:
        for service in (one, two, be):
            await service.store.close()
