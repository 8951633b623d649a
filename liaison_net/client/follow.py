"""Following an inbox live: every entry exactly once, across dropped connections.

The node's stream (``client.inbox_stream``) sends each inbox entry with a sequence number
greater than the ``after`` the client asked for, in order. So the client needs one number
to resume: the last seq it handed to its caller. ``follow_inbox`` keeps it, reconnects
with it after any break (network, node restart, the node closing a stream whose token
expired), and drops anything at or below it, so the caller sees no gap and no repeat.

Only ``Unavailable`` (cannot connect, connection lost, stream closed) is retried, with
bounded, jittered backoff (``core.delivery.BackoffPolicy``); every other error (a refused
login, too many streams, a malformed message) propagates to the caller.

Where a follower starts is the caller's choice; ``resume_position`` gives the officer's
acknowledged position: the end of the longest run of acknowledged entries from the start
of the inbox, so every unacknowledged entry is shown again after a restart.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from liaison_net import errors
from liaison_net.client.session import MAX_INBOX_PAGE, InboxEntry, NodeSession
from liaison_net.core.delivery import BackoffPolicy

#: Reconnect quickly (a node restart takes seconds), never wait more than a few seconds.
FOLLOW_BACKOFF = BackoffPolicy(initial_s=0.25, maximum_s=5.0)
#: A connection that stayed up this long was healthy: the next break starts backoff afresh.
STABLE_S = 10.0
MAX_RESUME_ENTRIES = 100_000

Connect = Callable[[int], AbstractAsyncContextManager[AsyncIterator[InboxEntry]]]
OnRetry = Callable[[errors.LiaisonError, float], None]


async def follow_inbox(connect: Connect, after: int, *,
                       policy: BackoffPolicy = FOLLOW_BACKOFF,
                       on_retry: OnRetry | None = None, max_failures: int | None = None,
                       rand: Callable[[], float] = random.random,
                       clock: Callable[[], float] = time.monotonic
                       ) -> AsyncGenerator[InboxEntry, None]:
    """Entries with seq > ``after`` in order, each once, reconnecting through ``connect``
    (a stream of entries with seq > its argument) for ever, or until ``max_failures``
    breaks in a row. Close it (``contextlib.aclosing``) to close the connection."""
    if after < 0:
        raise errors.Malformed("follow: after must be >= 0")
    last = after
    failures = 0
    while True:
        opened = clock()
        try:
            async with connect(last) as entries:
                opened = clock()
                async for entry in entries:
                    if entry.seq <= last:
                        continue  # never again what the caller already has
                    last = entry.seq
                    failures = 0
                    yield entry
            error: errors.LiaisonError = errors.Unavailable("the node ended the inbox stream")
        except errors.Unavailable as exc:
            error = exc
        if clock() - opened >= STABLE_S:
            failures = 0
        failures += 1
        if max_failures is not None and failures > max_failures:
            raise error
        delay = policy.delay(failures, rand())
        if on_retry is not None:
            on_retry(error, delay)
        await asyncio.sleep(delay)


async def resume_position(session: NodeSession) -> int:
    """The seq after which the officer's inbox holds its first unacknowledged entry (or
    the last seq, if every entry is acknowledged; 0 for an empty inbox)."""
    after = 0
    seen = 0
    while seen < MAX_RESUME_ENTRIES:
        page = await session.inbox(after=after, limit=MAX_INBOX_PAGE)
        for entry in page.items:
            if entry.acked is None:
                return after
            after = entry.seq
        seen += len(page.items)
        if len(page.items) < MAX_INBOX_PAGE:
            break
    return after
