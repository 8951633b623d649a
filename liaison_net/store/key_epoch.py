"""The key epoch: how the workers of one node learn that another changed a key.

Each process keeps signer and officer keys in memory (``key_cache``) and its peers' node
keys in its intake; its own writes empty the cache as they commit. When a node runs as
several workers on one database (docs/operations.md), a revocation, a rotation or a new
card committed by worker A must also reach worker B's memory: otherwise B would go on
accepting a key the node has revoked. So every write that changes a card, a node key, a
superseded key or a revocation (and a restriction or recall applied, which the others'
``RestrictionStore`` shortcut must learn of) also adds one to ``key_epoch`` in the same transaction
(``bump``), and every worker reads the epoch every ``[delivery] inbox_poll_s``
(``services/worker_sync.py``); when it moved, the worker drops its cached keys and
reloads its peers' node keys. A revocation committed by one worker is thus refused by the
others within that interval. Plain SQL (one row, ``UPDATE ... SET epoch = epoch + 1``),
the same on PostgreSQL, where the row lock also orders concurrent bumps.
"""

from __future__ import annotations

from liaison_net.store.database import Database, WriteTxn


async def bump(txn: WriteTxn) -> None:
    """In a write that changes keys: tell the node's other workers."""
    await txn.execute("UPDATE key_epoch SET epoch = epoch + 1 WHERE one = 1")


async def read(db: Database) -> int:
    row = await db.fetchone("SELECT epoch FROM key_epoch WHERE one = 1")
    return int(row[0]) if row is not None else 0
