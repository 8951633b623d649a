"""Leases: one worker of a node at a time does a given job (sending to one peer).

A node may run as several ``liaison node serve`` processes on one database (docs/
operations.md, "Several workers for one node"). Most of their work is safe side by side
(every write is a transaction; an envelope id is accepted once), but a peer must have one
sender: two would read the same queued hops and post them twice. So the sender of a peer
runs only in the worker that holds the lease ``sender:<peer>``.

A lease row says who holds it (``holder``, a worker's random id), until when
(``expires``, ms of the wall clock, renewed by the holder well before then) and its
fencing ``token``. Taking a free or expired lease over adds one to the token; renewing
keeps it. Expiry alone cannot stop a worker that was paused (a long GC, a frozen VM, a
partition from the database) and wakes up believing it still holds the lease: so every
write done under the lease checks, in its own transaction, that the token is still the
current one (``check_fence``), and refuses with ``LeaseLost`` otherwise (nothing of it
stored). The worker that took over has the higher token; the stale one can finish nothing.

Plain SQL in write transactions, no SQLite-only tricks. On PostgreSQL the same statements
work under ``SELECT ... FOR UPDATE`` of the lease row (or with a
``pg_try_advisory_xact_lock`` keyed by the lease name in front of them); the fence check
is the same ``SELECT token`` in the transaction of the write it guards, which the row lock
orders against a takeover.
"""

from __future__ import annotations

from dataclasses import dataclass

from liaison_net.errors import LeaseLost
from liaison_net.store.database import Database, WriteTxn


@dataclass(frozen=True)
class Fence:
    """What a worker acts under: the lease's name, its own holder id and the token it
    was given. Passed to the writes the lease guards."""

    name: str
    holder: str
    token: int


def sender_lease(peer: str) -> str:
    return f"sender:{peer}"


async def check_fence(txn: WriteTxn, fence: Fence) -> None:
    """In the transaction of a guarded write: refuse (``LeaseLost``) unless ``fence`` is
    still the lease's current holder and token. Time plays no part: a holder whose lease
    has expired but not been taken over yet still owns the job alone."""
    row = await (await txn.execute("SELECT holder, token FROM leases WHERE name = ?",
                                   (fence.name,))).fetchone()
    if row is None or row[0] != fence.holder or int(row[1]) != fence.token:
        raise LeaseLost(f"lease {fence.name} was taken over (token {fence.token} is stale)")


class LeaseStore:
    # Shared with the other parts of the facade (``node_store.NodeStore``).
    db: Database

    async def acquire_lease(self, name: str, holder: str, *, now: int, ttl_ms: int,
                            former_self: str | None = None) -> Fence | None:
        """Take ``name`` for ``ttl_ms`` if it is free, expired or already ours; the fence
        to act under, or None while another worker holds it. A takeover (a new holder)
        gets a higher token than any before; our own lease keeps its token.

        ``former_self``: a prefix of holder ids that are earlier lives of this very worker
        (a process of it that was killed and restarted): its lease is taken over at once,
        unexpired, with a higher token, instead of waiting out ``ttl_ms``. The caller must
        know that such a process is gone (``federation/lease.py``: it holds the same
        listening address on the same host)."""

        async def op(txn: WriteTxn) -> Fence | None:
            row = await (await txn.execute(
                "SELECT holder, token, expires FROM leases WHERE name = ?",
                (name,))).fetchone()
            if row is None:
                await txn.execute(
                    "INSERT INTO leases (name, holder, token, expires) VALUES (?, ?, 1, ?)",
                    (name, holder, now + ttl_ms))
                return Fence(name, holder, 1)
            current, token, expires = str(row[0]), int(row[1]), int(row[2])
            if current != holder:
                earlier_life = former_self is not None and current.startswith(former_self)
                if expires > now and not earlier_life:
                    return None
                token += 1  # a takeover: whatever the last holder still does is fenced off
            await txn.execute(
                "UPDATE leases SET holder = ?, token = ?, expires = ? WHERE name = ?",
                (holder, token, now + ttl_ms, name))
            return Fence(name, holder, token)

        return await self.db.write(op)

    async def renew_lease(self, fence: Fence, *, now: int, ttl_ms: int) -> bool:
        """Extend our lease; False if it is no longer ours (taken over)."""

        async def op(txn: WriteTxn) -> bool:
            cur = await txn.execute(
                "UPDATE leases SET expires = ? WHERE name = ? AND holder = ? AND token = ?",
                (now + ttl_ms, fence.name, fence.holder, fence.token))
            return cur.rowcount == 1

        return await self.db.write(op)

    async def release_lease(self, fence: Fence) -> None:
        """Give the lease up (a clean stop): another worker may take it at once. The token
        stays, so the next holder's is still higher."""

        async def op(txn: WriteTxn) -> None:
            await txn.execute(
                "UPDATE leases SET expires = 0 WHERE name = ? AND holder = ? AND token = ?",
                (fence.name, fence.holder, fence.token))

        await self.db.write(op)

    async def leases(self) -> list[tuple[str, str, int, int]]:
        """(name, holder, token, expires) of every lease, for the operator."""
        rows = await self.db.fetchall(
            "SELECT name, holder, token, expires FROM leases ORDER BY name")
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]
