"""The audit log as a witnessed Merkle log: this node's checkpoints out, its peers' in.

How a checkpoint travels
------------------------
The supervised publisher (``federation/checkpoints.py``) calls ``current`` every tick.
This service keeps the leaves of the node's audit log in memory (``merkle.MerkleLog``),
reading only the entries added since its last pass. Once ``[audit] checkpoint_every``
entries were added, or ``checkpoint_seconds`` passed with any added, it signs a checkpoint
(``core.checkpoint``) and keeps it with a digest of the leaves it added
(``core.kept_leaves``: subtree roots and a 2-byte mark per leaf, so `audit verify` can name
the first entry a rewrite changed; the leaves themselves are the audit rows' hashes). The
publisher offers the latest one to every peer that has not cosigned it yet, with
consistency proofs (``proof``) from the sizes that peer holds, and the latest checkpoint
this node witnessed of each other node (``seen``); a verified cosignature is kept
(``cosigned_by``).

The witness (``witness``) verifies a peer's checkpoint under the peer's current key
before it decodes it, and judges it (``checkpoint.judge``) against the latest one of that
node it witnessed and the ones it *heard* of from the other witnesses' ``seen``: the first
taken on trust, then only growth that proofs show is consistent with all of them, so a
node that shows two witnesses two logs is caught once they have compared notes. A split
view, a rollback or an inconsistent proof is an alarm: an audit entry and an alarm row in
one commit, a metric, a warning on /healthz. Nothing an alarm concerns is cosigned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from liaison_net.clock import Clock
from liaison_net.config import AuditConfig
from liaison_net.core import checkpoint as cp
from liaison_net.core import crypto, kept_leaves, merkle
from liaison_net.core.limits import Limits
from liaison_net.errors import BadTimestamp, LiaisonError, UnknownKey
from liaison_net.metrics import NodeMetrics
from liaison_net.services.intake import Keys
from liaison_net.store.checkpoint_store import StoredCheckpoint
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.checkpoints")

#: Entries read per pass of ``_load``.
LOAD_BATCH = 20_000


@dataclass(frozen=True)
class Witnessed:
    """The witness's answer: cosigned, proofs wanted from the sizes ``proof_from``, or an
    alarm."""

    verdict: cp.Verdict
    cosignature: bytes = b""
    proof_from: tuple[int, ...] = ()


class AuditCheckpoints:
    def __init__(self, *, node_id: str, store: NodeStore, keys: Keys, config: AuditConfig,
                 peers: Sequence[str], metrics: NodeMetrics, limits: Limits,
                 clock: Clock) -> None:
        self.node_id = node_id
        self.store = store
        self.keys = keys
        self.config = config
        self.peers = list(peers)
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        self._log = merkle.MerkleLog()  # the leaves, with cached subtree roots
        self._seq = 0  # last audit seq whose leaf is in ``_log``
        self._latest: cp.SignedCheckpoint | None = None
        self.cosigned: dict[str, int] = {}  # peer -> largest size of ours it cosigned

    # --- this node's checkpoints --------------------------------------------------------

    async def start(self) -> None:
        """What the store holds: the latest own checkpoint, what each peer cosigned."""
        self._log, self._seq = merkle.MerkleLog(), 0
        self._latest = None
        await self._catch_up_with_other_workers()

    async def _catch_up_with_other_workers(self) -> None:
        """Another worker of this node may have signed a later checkpoint, or had one
        cosigned, since: start from those, so no witness is ever offered less than it holds
        (it would be a rollback)."""
        stored = await self.store.checkpoints.latest(self.node_id)
        if stored is not None and (self._latest is None
                                   or stored.size > self._latest.checkpoint.size):
            self._latest = cp.SignedCheckpoint(
                cp.Checkpoint(self.node_id, stored.size, stored.root, stored.at), stored.signed)
        for peer in self.peers:
            self.cosigned[peer] = max(self.cosigned.get(peer, 0), await
                                      self.store.checkpoints.cosigned_by(self.node_id, peer))

    async def _load(self) -> None:
        while True:
            rows = await self.store.db.fetchall(
                "SELECT seq, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (self._seq, LOAD_BATCH))
            for _, h in rows:
                self._log.append(merkle.leaf_hash(bytes(h)))
            if rows:
                self._seq = rows[-1][0]
            if len(rows) < LOAD_BATCH:
                return

    def _due(self, now: int) -> bool:
        size = len(self._log)
        if size == 0:
            return False
        if self._latest is None:
            return True
        last = self._latest.checkpoint
        grown = size - last.size
        return grown >= self.config.checkpoint_every or (
            grown > 0 and now - last.at >= self.config.checkpoint_seconds * 1000)

    async def current(self) -> cp.SignedCheckpoint | None:
        """The latest checkpoint, after signing a new one if one is due."""
        await self._catch_up_with_other_workers()
        await self._load()
        if self._due(self.clock.now_ms()):
            await self.checkpoint_now()
        return self._latest

    async def checkpoint_now(self) -> cp.SignedCheckpoint | None:
        """Sign a checkpoint of the log as it is, if it grew since the last one."""
        await self._load()
        size = len(self._log)
        if size == 0 or (self._latest is not None and self._latest.checkpoint.size >= size):
            return self._latest
        # The first root after a start hashes the whole log (about 1 s per million
        # entries): off the event loop. Later ones reuse the cached subtrees (milliseconds).
        # Only this task touches the log, and it waits here, so nothing races the thread.
        root = await asyncio.to_thread(self._log.root, size)
        now = self.clock.now_ms()
        signed = cp.sign_checkpoint(cp.Checkpoint(self.node_id, size, root, now),
                                    self.keys.own)
        since = self._latest.checkpoint.size if self._latest else 0
        await self.store.checkpoints.put_own(signed, kept_leaves.keep(self._log, since, size),
                                             now=now)
        signed = await self._as_kept(signed)
        self._latest = signed
        log.info("audit.checkpoint", size=size)
        return signed

    async def _as_kept(self, signed: cp.SignedCheckpoint) -> cp.SignedCheckpoint:
        """The checkpoint of this size the store kept: another worker may have signed the
        same size first (another ``at``), and then ours was ignored. Peers must cosign the
        kept one, or their cosignatures would not verify against the row `audit verify`
        reads."""
        rows = await self.store.checkpoints.of(self.node_id, size=signed.checkpoint.size)
        if not rows or rows[0].signed == signed.raw:
            return signed
        try:
            kept = cp.verify_checkpoint(rows[0].signed, self.keys.own.public, node=self.node_id)
        except LiaisonError:
            return signed
        return kept if kept.checkpoint.root == signed.checkpoint.root else signed

    async def seen(self) -> list[bytes]:
        """The latest checkpoint this node witnessed of each peer, for the others to compare."""
        out = []
        for peer in self.peers:
            latest = await self.store.checkpoints.witnessed_by_us(peer)
            if latest:
                out.append(latest[0].signed)
        return out[:cp.MAX_SEEN]

    def proof(self, old_size: int, new_size: int) -> list[bytes]:
        """A consistency proof between two sizes of this node's log (empty if none fits)."""
        if not 0 < old_size < new_size <= len(self._log):
            return []
        return self._log.consistency_proof(old_size, new_size)

    async def cosigned_by(self, peer: str, signed: cp.SignedCheckpoint, raw: bytes) -> None:
        """``peer``'s cosignature of our checkpoint: kept once it verifies."""
        public = self.keys.nodes.get(peer)
        if public is None:
            raise UnknownKey(f"no signing key of {peer} yet")
        cosignature = cp.verify_cosignature(raw, signed, public, witness=peer)
        size = signed.checkpoint.size
        await self.store.checkpoints.put_cosignature(self.node_id, size, peer,
                                                     cosignature.to_wire(),
                                                     now=self.clock.now_ms())
        self.cosigned[peer] = max(self.cosigned.get(peer, 0), size)
        log.info("audit.checkpoint_witnessed", peer=peer, size=size)

    # --- the witness: a peer's checkpoint in ----------------------------------------------

    async def witness(self, peer: str, *, checkpoint: bytes,
                      proofs: dict[int, list[bytes]], seen: list[bytes]) -> Witnessed:
        """Check ``peer``'s checkpoint (``proofs``: old size -> consistency proof from it),
        cosign it, ask for the proofs it lacks, or raise the alarm."""
        public = self.keys.nodes.get(peer)
        if public is None:
            raise UnknownKey(f"no signing key of {peer} yet: its directory push comes first")
        signed = cp.verify_checkpoint(checkpoint, public, node=peer)
        new = signed.checkpoint
        now = self.clock.now_ms()
        if new.at > now + self.limits.max_clock_skew_ms:
            raise BadTimestamp("checkpoint time is in the future")
        await self._compare_notes(peer, seen, now)
        store = self.store.checkpoints
        same = await store.of(peer, size=new.size)
        latest = await store.witnessed_by_us(peer)
        heard = await store.witnessed_by_us(peer, heard=True, limit=cp.MAX_HEARD)
        judged = cp.judge(new, latest=_plain(latest[0]) if latest else None,
                          same_size=_plain(same[0]) if same else None,
                          heard=[_plain(h) for h in heard], proofs=proofs)
        if judged.verdict is cp.Verdict.NEED_PROOF:
            return Witnessed(judged.verdict, proof_from=judged.need_from)
        if judged.verdict.alarm:
            held = ", ".join(str(c.size) for c in (*latest, *heard))
            await self._alarm(peer, judged.verdict, new.size, now,
                              f"sizes held: {held or 'none'}")
            return Witnessed(judged.verdict)
        cosignature = cp.cosign(signed, witness=self.node_id, key=self.keys.own, at=now)
        await store.put_witnessed(signed, witness=self.node_id,
                                  cosignature=cosignature.to_wire(), now=now)
        for h in heard:  # shown consistent with this one: cosigned, no longer pending
            if h.size != new.size:
                held_signed = cp.SignedCheckpoint(_plain(h), h.signed)
                await store.put_cosignature(
                    peer, h.size, self.node_id,
                    cp.cosign(held_signed, witness=self.node_id, key=self.keys.own,
                              at=now).to_wire(), now=now)
        self.metrics.checkpoints_witnessed.labels(node=peer).inc()
        return Witnessed(judged.verdict, cosignature=cosignature.to_wire())

    async def _compare_notes(self, peer: str, seen: list[bytes], now: int) -> None:
        """Checkpoints of third nodes that ``peer`` witnessed. One whose size we hold with
        another root means that node showed us and ``peer`` two different logs: the alarm.
        Any other is kept as *heard*: that node's next checkpoint offered to us must prove
        its log extends it (``checkpoint.judge``), so two logs shown at different sizes are
        caught too."""
        for raw in seen:
            node = cp.claimed_node(raw)
            public = self.keys.nodes.get(node) if node else None
            if node is None or public is None or node in (peer, self.node_id):
                continue
            try:
                other = cp.verify_checkpoint(raw, public, node=node)
            except LiaisonError as exc:  # not that node's signature: not its view either
                log.info("audit.seen_refused", peer=peer, node=node, code=exc.code)
                continue
            size = other.checkpoint.size
            held = await self.store.checkpoints.of(node, size=size)
            if held and not crypto.constant_time_equal(held[0].root, other.checkpoint.root):
                await self._alarm(node, cp.Verdict.SPLIT_VIEW, size, now,
                                  f"{peer} witnessed another root for this size")
            elif not held and not await self.store.checkpoints.put_heard(
                    other, now=now, limit=cp.MAX_HEARD):
                log.info("audit.heard_full", node=node, size=size)

    async def _alarm(self, node: str, verdict: cp.Verdict, size: int, now: int,
                     why: str) -> None:
        log.error("audit.checkpoint_alarm", node=node, verdict=verdict.value, size=size,
                  reason=why)
        self.metrics.checkpoint_alarms.labels(node=node, verdict=verdict.value).inc()
        await self.store.checkpoints.alarm(node=node, verdict=verdict.value, size=size,
                                           now=now, why=why)


def _plain(stored: StoredCheckpoint) -> cp.Checkpoint:
    """A checkpoint this witness stored itself (after verifying it): its columns stand."""
    return cp.Checkpoint(stored.node, stored.size, stored.root, stored.at)
