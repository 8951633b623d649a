"""What a worker of a node of several learns from the others through the database.

Most of a node's state is read from the database at each use, so several workers on one
database share it as they commit (docs/operations.md, "Several workers for one node").
Keys are the exception: each process keeps them in memory (the key cache, its peers'
node keys). ``KeyEpochWatch`` reads ``key_epoch`` (``store/key_epoch.py``) every
``interval_s``; when another worker has changed a key since, it drops this process's
cached keys and reloads its peers' node keys, so a revocation committed by one worker is
refused by every worker within ``interval_s``. A worker's own writes move the epoch too:
a reload it did not need costs one query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from liaison_net.errors import LiaisonError

log = structlog.get_logger("liaison.worker_sync")


class KeyEpochWatch:
    def __init__(self, *, read_epoch: Callable[[], Awaitable[int]],
                 reload: Callable[[], Awaitable[None]], interval_s: float) -> None:
        self.read_epoch = read_epoch
        self.reload = reload
        self.interval_s = interval_s

    async def run(self) -> None:
        seen = await self.read_epoch()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                epoch = await self.read_epoch()
                if epoch != seen:
                    await self.reload()
                    log.debug("keys.reloaded", epoch=epoch)
                    seen = epoch
            except LiaisonError:
                continue  # the database is busy or gone for now: look again next time
