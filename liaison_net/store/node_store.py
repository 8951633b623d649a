"""What a node keeps, in domain terms: envelopes, hops, inboxes, peers, directory, audit.

Callers get core objects and plain tuples back, never cursors. Every method that changes
state runs as one group-committed write (see ``database``), together with its audit
entry, so a decision and its record are durable together or not at all.

The work is split by job, one module each, and joined here into the one interface the
node and the admin CLI use: ``envelope_store`` (envelopes, hops, backoff, cursors,
expiry), ``inbox_store``, ``directory_store`` (cards, node keys), ``audit_store``,
``lease_store`` (one worker per job when a node runs several); and, as attributes,
``keys``, ``signals``, ``requests``, ``retention``, ``restrictions`` and ``effects``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from liaison_net.clock import SYSTEM_CLOCK, Clock
from liaison_net.config import NodeConfig
from liaison_net.store import key_epoch
from liaison_net.store.admin_op_store import AdminOpStore
from liaison_net.store.audit_store import AuditStore
from liaison_net.store.checkpoint_store import CheckpointStore
from liaison_net.store.database import Backend, Database
from liaison_net.store.directory_store import DirectoryStore
from liaison_net.store.effect_store import EffectStore
from liaison_net.store.envelope_store import AcceptOutcome, EnvelopeStore, QueuedHop
from liaison_net.store.hold_store import HoldStore
from liaison_net.store.inbox_store import InboxItem, InboxStore
from liaison_net.store.key_store import KeyStore
from liaison_net.store.lease_store import LeaseStore
from liaison_net.store.request_store import RequestStore
from liaison_net.store.restriction_store import RestrictionStore
from liaison_net.store.retention_store import RetentionStore
from liaison_net.store.signal_store import SignalStore

__all__ = ["AcceptOutcome", "InboxItem", "NodeStore", "Status"]


@dataclass
class Status:
    """What `liaison admin status` shows: queues and outcomes per peer, backoff, totals."""

    node: str
    envelopes: int
    queued: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    backoff: dict[str, dict[str, object]] = field(default_factory=dict)
    inbox_unacked: int = 0
    officers: int = 0
    audit_entries: int = 0
    effects_pending: int = 0  # owed evidence/notices not yet issued (a backlog if it grows)
    # Per peer, the worker whose lease lets it send there (holder, token, expires ms).
    senders: dict[str, dict[str, object]] = field(default_factory=dict)


class NodeStore(EnvelopeStore, InboxStore, DirectoryStore, AuditStore, LeaseStore):
    def __init__(self, path: Path | None, node_id: str, *, group_commit_max: int = 512,
                 max_db_mb: float | None = None, clock: Clock = SYSTEM_CLOCK,
                 backend: Backend | None = None, early_riders: bool = False) -> None:
        """On the SQLite file ``path``, or on ``backend`` (PostgreSQL) when given.
        ``early_riders``: see ``database`` ("Early riders")."""
        self.node_id = node_id
        self.db = Database(path, group_commit_max=group_commit_max, max_db_mb=max_db_mb,
                           clock=clock, backend=backend, early_riders=early_riders)
        self.keys = KeyStore(self.db)
        self.signals = SignalStore(self.db, node_id)
        self.requests = RequestStore(self.db, node_id)
        self.retention = RetentionStore(self.db, node_id)
        self.restrictions = RestrictionStore(self.db, node_id)
        self.effects = EffectStore(self.db, node_id)
        self.checkpoints = CheckpointStore(self.db, node_id)  # audit checkpoints, witnessed
        self.holds = HoldStore(self.db, node_id)
        self.admin_ops = AdminOpStore(self.db, node_id)
        # Called with the officers whose inbox got rows, after the commit (live delivery).
        self.on_inbox: Callable[[list[str]], None] | None = None
        self.on_queued: Callable[[list[QueuedHop]], None] | None = None

    async def key_epoch(self) -> int:
        """Moves whenever any worker changed a key (``store/key_epoch.py``)."""
        return await key_epoch.read(self.db)

    def forget_cached_keys(self) -> None:
        """Another worker changed keys or applied a restriction or recall (both move
        ``key_epoch``): what this process cached of them may be stale."""
        self.db.key_cache.begin_change()
        self.db.key_cache.note_all_weakened()  # whose keys, this process cannot tell
        self.db.key_cache.end_change()
        self.restrictions.forget()

    @classmethod
    def for_config(cls, cfg: NodeConfig, *, clock: Clock = SYSTEM_CLOCK) -> NodeStore:
        """The node's store as its config says: its SQLite file, or PostgreSQL."""
        backend: Backend | None = None
        if cfg.store.postgresql:
            # Imported here: a SQLite node (and `liaison --help`) never loads the driver.
            from liaison_net.store.postgres import PostgresBackend

            assert cfg.store.dsn is not None  # the config refuses PostgreSQL without one
            backend = PostgresBackend(cfg.store.dsn, password_file=cfg.store.password_file)
        # Early riders hold the write lock while they wait: on SQLite only, and there off
        # while another writer is present or committing (database.py, "Early riders").
        return cls(cfg.database, cfg.id, group_commit_max=cfg.delivery.group_commit_max,
                   max_db_mb=cfg.store.max_db_mb, clock=clock, backend=backend,
                   early_riders=backend is None)

    async def open(self, *, writer: bool = True) -> None:
        await self.db.open(writer=writer)

    async def close(self) -> None:
        await self.db.close()

    async def open_read_only(self) -> None:
        """Open for reading only (admin commands beside a running node): see
        ``Database.open_read_only``."""
        await self.db.open_read_only()

    async def status(self) -> Status:
        """Counts for the operator, per peer and in total (one read each, no lock)."""
        row = await self.db.fetchone("SELECT COUNT(*) FROM envelopes")
        out = Status(node=self.node_id, envelopes=int(row[0]))
        for peer, state, count in await self.db.fetchall(
                "SELECT node, state, COUNT(*) FROM hops GROUP BY node, state"):
            bucket = {"queued": out.queued, "delivered": out.delivered,
                      "refused": out.refused, "expired": out.expired}.get(state)
            if bucket is not None:
                bucket[peer] = count
        for peer, attempts, next_attempt, error in await self.db.fetchall(
                "SELECT node, attempts, next_attempt, last_error FROM peers"):
            out.backoff[peer] = {"attempts": attempts, "next_attempt": next_attempt,
                                 "last_error": error}
        row = await self.db.fetchone("SELECT COUNT(*) FROM inbox WHERE acked IS NULL")
        out.inbox_unacked = int(row[0])
        row = await self.db.fetchone("SELECT COUNT(*) FROM directory")
        out.officers = int(row[0])
        row = await self.db.fetchone("SELECT COUNT(*) FROM audit")
        out.audit_entries = int(row[0])
        out.effects_pending = await self.effects.pending()
        for name, holder, token, expires in await self.leases():
            if name.startswith("sender:"):
                out.senders[name.removeprefix("sender:")] = {
                    "holder": holder, "token": token, "expires": expires}
        return out
