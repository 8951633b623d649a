"""What a node keeps, in domain terms: envelopes, hops, inboxes, peers, directory, audit.

Callers get core objects and plain tuples back, never cursors. Every method that changes
state runs as one group-committed write (see ``database``), together with its audit
entry, so a decision and its record are durable together or not at all.

The work is split by job, one module each, and joined here into the one interface the
node and the admin CLI use: ``envelope_store`` (envelopes, hops, backoff, cursors,
expiry), ``inbox_store``, ``directory_store`` (cards, node keys), ``audit_store``; and,
as attributes, ``keys``, ``signals``, ``requests`` and ``retention``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from liaison_net.store.audit_store import AuditStore
from liaison_net.store.database import Database
from liaison_net.store.directory_store import DirectoryStore
from liaison_net.store.envelope_store import AcceptOutcome, EnvelopeStore
from liaison_net.store.inbox_store import InboxItem, InboxStore
from liaison_net.store.key_store import KeyStore
from liaison_net.store.request_store import RequestStore
from liaison_net.store.retention_store import RetentionStore
from liaison_net.store.signal_store import SignalStore

__all__ = ["AcceptOutcome", "InboxItem", "NodeStore"]


class NodeStore(EnvelopeStore, InboxStore, DirectoryStore, AuditStore):
    def __init__(self, path: Path, node_id: str, *, group_commit_max: int = 512,
                 max_db_mb: float | None = None) -> None:
        self.node_id = node_id
        self.db = Database(path, group_commit_max=group_commit_max, max_db_mb=max_db_mb)
        self.keys = KeyStore(self.db)
        self.signals = SignalStore(self.db, node_id)
        self.requests = RequestStore(self.db, node_id)
        self.retention = RetentionStore(self.db, node_id)
        # Called with the officers whose inbox got rows, after the commit (live delivery).
        self.on_inbox: Callable[[list[str]], None] | None = None

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()
