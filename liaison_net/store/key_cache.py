"""Signer and officer keys in memory: every envelope needs them, and they rarely change.

What is cached are the stored facts (rows), never a decision: whether a key may sign is
still worked out from the facts and ``now`` at each lookup, so a grace period or a
revocation's effective time ends exactly when it did without the cache.

Invalidation is by construction, not by call sites. Every statement a write group runs
goes through ``WriteTxn``, which knows (``database.changes_keys``) whether it may touch a
card, a superseded key or a revocation: the first such statement of a group calls
``begin_change`` on the writer thread, before the group commits, and the end of the group
(committed or rolled back) calls ``end_change``. In between the cache neither answers nor
fills, so a lookup made while a revocation is being committed reads the database, and the
first lookup after the commit sees it. A lookup that read the database before a change and
finishes after it does not store what it read (the generation moved on).

Concurrent misses of one key share one read (``get``): a federation transaction's
envelopes are decided concurrently, so on a cold cache (a node just started, as when it
comes back to a backlog) every envelope of the first transaction missed at once and each
read the same rows, several reads per envelope. A lookup joins a read only if both started
in the same generation with no change being written, the same rule that lets it use a
stored entry: a change that begins meanwhile makes later lookups read for themselves.

Writes by another process (an admin command while no node runs, which is how the CLI
works: with a node running it asks the node over its admin socket) happen before the node
opens the file, when the cache is empty.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

#: Entries kept (least recently used first out): a few per officer and peer key.
MAX_ENTRIES = 8192
#: Principals whose latest key weakening is remembered (``note_weakened``): past this, a
#: decision older than the weakening forgotten is taken as stale (decided again), never as
#: fresh. One per principal, however often it is noted: a peer re-carding one officer of
#: its own in pushes of 500 cards filled a record of notes and made every decision on the
#: node stale (review16h). Above a peer's default burst (``[federation] burst``, 10,000
#: items): one peer re-carding that many distinct officers of its own fills it at most once
#: per burst, and then sends back only the decisions in flight, once (decided again).
MAX_WEAKENED = 16_384


class KeyCache:
    """A bounded LRU of key facts with a change gate; shared by the event loop (lookups)
    and the writer thread (``begin_change``/``end_change``), hence the lock."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("a key cache holds at least one entry")
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._generation = 0
        self._changing = 0  # write groups that touched keys and have not ended yet
        # Reads under way, by key: (the generation they started in, their result). Touched
        # on the event loop only (``get``), so not under the lock.
        self._loading: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}
        # principal -> the generation of the latest write that may have made one of its
        # keys invalid (a revocation, a superseded key, a new card), oldest first; and the
        # generation of the latest one forgotten to keep it bounded (-1: none).
        self._weakened: OrderedDict[str, int] = OrderedDict()
        self._forgotten = -1
        self._latest = -1  # the generation of the latest weakening noted (-1: none)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def begin_change(self) -> None:
        """A group is about to change keys: empty the cache and stop serving it."""
        with self._lock:
            self._changing += 1
            self._generation += 1
            self._entries.clear()

    def end_change(self) -> None:
        """That group committed or rolled back: the database now says what is true."""
        with self._lock:
            self._changing -= 1
            self._generation += 1
            self._entries.clear()

    @staticmethod
    async def _join(read: asyncio.Future[Any], load: Callable[[], Awaitable[T]]) -> T:
        """The result of a read already under way for the same key; a read whose caller
        was cancelled is done again here. Shielded: cancelling one waiter must not cancel
        the read the others wait for."""
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            if not read.cancelled():
                raise  # this waiter was cancelled
        return await load()

    def generation(self) -> int:
        """Taken before a decision reads keys; ``weakened_since`` asks about it later."""
        with self._lock:
            return self._generation

    def note_weakened(self, principal: str) -> None:
        """On the writer thread, in a group that changes keys (after ``begin_change``):
        ``principal``'s keys may no longer sign as they did."""
        with self._lock:
            weakened = self._weakened
            weakened[principal] = self._latest = self._generation
            weakened.move_to_end(principal)
            if len(weakened) > MAX_WEAKENED:
                self._forgotten = max(self._forgotten, weakened.popitem(last=False)[1])

    def note_all_weakened(self) -> None:
        """Keys changed and whose is not known (another worker's write, seen as a moved key
        epoch): every decision made before now is decided again, as the old global stamp
        had it (review16h)."""
        with self._lock:
            self._forgotten = max(self._forgotten, self._generation)
            self._latest = max(self._latest, self._generation)

    def quiet_since(self, generation: int) -> bool:
        """No key of anyone weakened since ``generation``: the usual case, answered before
        the principals a decision read are worked out (a forward's originals decoded)."""
        with self._lock:
            return self._latest < generation

    def weakened_since(self, generation: int, principals: Collection[str]) -> bool:
        """Whether a write since ``generation`` (or in the group under way) may have made
        a key of one of ``principals`` invalid. Per principal, so one peer's churn of its
        own officers' cards sends back only decisions about those officers."""
        with self._lock:
            if self._forgotten >= generation:
                return True  # the record no longer reaches back that far: assume so
            weakened = self._weakened
            return any(weakened.get(principal, -1) >= generation for principal in principals)

    def stamp(self) -> int | None:
        """A token that moves whenever a write group touches keys, None while one is being
        written: two equal stamps mean no card, key or revocation was written in between
        (the federation sender skips its directory and revocation reads on that)."""
        with self._lock:
            return self._generation if self._changing == 0 else None

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]],
                  keep: Callable[[T], bool] = lambda _: True) -> T:
        """The cached value of ``key``, else ``load()``'s, stored if ``keep`` says so (e.g.
        not an unknown key, which anyone can make up) and no key change happened since."""
        with self._lock:
            # Empty while a change is written: begin_change clears it and nothing is
            # stored until end_change (the ``generation`` gate below).
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]  # type: ignore[no-any-return]  # stored by load
            self.misses += 1
            generation = self._generation if self._changing == 0 else None
        if generation is None:  # a change is being written: read for yourself, keep nothing
            return await load()
        under_way = self._loading.get(key)
        if under_way is not None and under_way[0] == generation:
            return await self._join(under_way[1], load)
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = (generation, result)
        try:
            value = await load()
        except asyncio.CancelledError:
            result.cancel()  # those waiting read for themselves (``_join``)
            raise
        except BaseException as exc:
            result.set_exception(exc)
            result.exception()  # marked retrieved: no warning when nobody waited
            raise
        else:
            result.set_result(value)
        finally:
            if key in self._loading and self._loading[key][1] is result:
                del self._loading[key]
        if keep(value):
            with self._lock:
                if self._generation == generation:  # no change began since the read did
                    self._entries[key] = value
                    self._entries.move_to_end(key)
                    while len(self._entries) > self._max:
                        self._entries.popitem(last=False)
        return value
