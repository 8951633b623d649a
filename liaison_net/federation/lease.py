"""A peer's sender runs in one worker of the node at a time: the one holding its lease.

When a node runs as several ``liaison node serve`` processes on one database, each starts
a ``SenderLease`` per peer; only the one that holds the lease ``sender:<peer>``
(``store/lease_store.py``) runs the ``PeerSender``. The others try to take the lease
every third of its life, so when the holder dies (SIGKILL, a lost machine) another worker
sends within ``[delivery] lease_s`` and a bit (a restarted worker takes its own dead
life's leases back at once, ``worker_prefix``): the queued hops are in the shared database,
nothing of them is lost, and a transaction the dead worker had in flight is simply sent
again (the peer answers ``duplicate`` for what it already took).

The holder renews every third of ``lease_s``. If a renewal finds the lease taken over, or
cannot be written until the lease would have expired, the sender is stopped. A transaction
still in flight then cannot record its answers: ``finish_hops`` checks the fencing token
in its own transaction and refuses with ``LeaseLost`` (nothing written), so a worker that
was paused past its lease finishes nothing stale. A clean stop gives the lease up
(``release``, while the node's writer still runs), so another worker takes over at once.
A node of one worker pays one small write per third of ``lease_s`` per peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket

import structlog

from liaison_net.clock import Clock
from liaison_net.errors import LeaseLost, Unavailable
from liaison_net.federation.sender import PeerSender
from liaison_net.store.lease_store import Fence, sender_lease
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.lease")

RELEASE_TIMEOUT_S = 2.0  # a clean stop waits at most this long to give the lease up


def worker_prefix(federation: str) -> str:
    """What names this worker across restarts: its host and its federation listener. Only
    one process at a time can listen there, and leases are taken only once the node
    listens, so a lease held under this prefix by another process is a dead earlier life
    of this worker (killed, then restarted): taken back at once, not after ``lease_s``."""
    return f"{socket.gethostname()[:64]}/{federation}/"


def worker_id(federation: str) -> str:
    """This process as a lease holder: the worker's prefix, then the PID for the operator
    and a random part (a PID is reused after a reboot)."""
    return f"{worker_prefix(federation)}{os.getpid()}/{secrets.token_hex(4)}"


class SenderLease:
    def __init__(self, *, sender: PeerSender, store: NodeStore, holder: str, lease_s: float,
                 clock: Clock, former_self: str | None = None) -> None:
        self.sender = sender
        self.store = store
        self.holder = holder
        self.former_self = former_self
        self.ttl_ms = int(lease_s * 1000)
        self.clock = clock
        self.name = sender_lease(sender.peer.id)
        self.held = asyncio.Event()  # set while this worker sends to the peer
        self._fence: Fence | None = None

    @property
    def _period_s(self) -> float:
        return self.ttl_ms / 3000

    async def run(self) -> None:
        """Until cancelled: take the lease when it is free, send while it is ours."""
        while True:
            try:
                fence = await self.store.acquire_lease(self.name, self.holder,
                                                       now=self.clock.now_ms(),
                                                       ttl_ms=self.ttl_ms,
                                                       former_self=self.former_self)
            except Unavailable:
                fence = None
            if fence is None:
                await asyncio.sleep(self._period_s)
                continue
            log.info("lease.taken", lease=self.name, token=fence.token)
            try:
                await self._send_under(fence)
            except* LeaseLost as lost:
                log.warning("lease.lost", lease=self.name, token=fence.token,
                            reason=str(lost.exceptions[0])[:200])

    async def _send_under(self, fence: Fence) -> None:
        self.sender.fence = fence
        self._fence = fence
        self.held.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.sender.run(), name=f"sender-{self.sender.peer.id}")
                tasks.create_task(self._keep(fence), name=f"lease-{self.name}")
        finally:
            self.held.clear()
            self.sender.fence = None
            self._fence = None

    async def _keep(self, fence: Fence) -> None:
        """Renew until the lease is lost; then raise ``LeaseLost`` (stops the sender)."""
        expires = self.clock.now_ms() + self.ttl_ms
        while True:
            await asyncio.sleep(self._period_s)
            now = self.clock.now_ms()
            try:
                if not await self.store.renew_lease(fence, now=now, ttl_ms=self.ttl_ms):
                    raise LeaseLost(f"lease {self.name} was taken over")
                expires = now + self.ttl_ms
            except Unavailable:
                if self.clock.now_ms() >= expires:
                    raise LeaseLost(f"lease {self.name} expired: could not renew it") from None

    async def release(self) -> None:
        """A clean stop, before the node's loops are cancelled (the writer still runs):
        give the lease up so another worker sends at once. Whatever this sender still
        finishes after that is fenced off once the other worker has taken over."""
        fence = self._fence
        if fence is None:
            return
        with contextlib.suppress(Unavailable, TimeoutError):
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self.store.release_lease(fence)
                log.info("lease.released", lease=self.name, token=fence.token)
