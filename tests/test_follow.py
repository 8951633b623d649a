"""Live delivery without a network: the follower's resume logic against scripted streams,
and the node's stream bookkeeping (slots, wake-ups)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from liaison_net import errors
from liaison_net.client.follow import follow_inbox
from liaison_net.client.session import InboxEntry
from liaison_net.core.delivery import BackoffPolicy
from liaison_net.officer_api.inbox_stream import InboxWatch, StreamSlots

FAST = BackoffPolicy(initial_s=0.001, maximum_s=0.002)


def entry(seq: int) -> InboxEntry:
    return InboxEntry(seq=seq, id=f"{seq:026d}", sender="nl/jdevries", kind="message",
                      precedence="routine", created=seq, relayed=seq, acked=None)


@dataclass
class ScriptedNode:
    """Each connection serves the next script: entries (seqs), then how it ends."""

    scripts: list[tuple[list[int], errors.LiaisonError | None]]
    asked: list[int] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def connect(self, after: int) -> AsyncIterator[AsyncIterator[InboxEntry]]:
        self.asked.append(after)
        if not self.scripts:
            raise errors.Unavailable("script exhausted")
        seqs, end = self.scripts.pop(0)
        if not seqs and end is not None:
            raise end  # refused at connect

        async def entries() -> AsyncIterator[InboxEntry]:
            for seq in seqs:
                yield entry(seq)
            if end is not None:
                raise end

        yield entries()


async def take(node: ScriptedNode, after: int, n: int, **kwargs: object) -> list[int]:
    out: list[int] = []
    retries: list[str] = []
    async with contextlib.aclosing(follow_inbox(
            node.connect, after, policy=FAST, rand=lambda: 0.5,
            on_retry=lambda exc, delay: retries.append(exc.code), **kwargs)) as stream:
        async for e in stream:
            out.append(e.seq)
            if len(out) == n:
                break
    return out


async def test_a_break_resumes_after_the_last_entry_yielded_without_repeats() -> None:
    lost = errors.Unavailable("connection reset")
    node = ScriptedNode([([1, 2], lost),           # drops mid-stream
                         ([], lost),               # node still down
                         ([2, 3], None),           # replays 2 (dropped), ends cleanly
                         ([4, 5], None)])
    assert await take(node, 0, 5) == [1, 2, 3, 4, 5]
    assert node.asked == [0, 2, 2, 3]


async def test_follow_starts_after_the_given_position() -> None:
    node = ScriptedNode([([3, 4, 5], None)])
    assert await take(node, 4, 1) == [5]
    assert node.asked == [4]


async def test_only_unavailable_is_retried() -> None:
    node = ScriptedNode([([1], errors.RateLimited("too many streams"))])
    with pytest.raises(errors.RateLimited):
        await take(node, 0, 5)
    assert node.asked == [0]


async def test_max_failures_bounds_consecutive_breaks() -> None:
    down = errors.Unavailable("cannot reach node")
    node = ScriptedNode([([], down)] * 4)
    with pytest.raises(errors.Unavailable):
        await take(node, 0, 1, max_failures=2)
    assert node.asked == [0, 0, 0]


async def test_a_yielded_entry_resets_the_failure_count() -> None:
    down = errors.Unavailable("cannot reach node")
    node = ScriptedNode([([], down), ([], down), ([1], down), ([], down), ([2], None)])
    assert await take(node, 0, 2, max_failures=2) == [1, 2]


def test_stream_slots_limit_per_officer_and_in_total() -> None:
    slots = StreamSlots(per_officer=2, total=3)
    slots.take("nl/a")
    slots.take("nl/a")
    with pytest.raises(errors.RateLimited, match="per officer"):
        slots.take("nl/a")
    slots.take("nl/b")
    with pytest.raises(errors.RateLimited, match="at most 3 live inbox streams"):
        slots.take("nl/c")
    assert slots.release("nl/a") == 1
    slots.take("nl/c")
    assert slots.release("nl/b") == 0 and slots.open_total == 2


async def test_inbox_watch_wakes_a_waiter_taken_before_the_commit() -> None:
    watch = InboxWatch()
    early = watch.waiter("nl/a")
    watch.notify(["nl/b"])
    assert not early.is_set()
    watch.notify(["nl/a"])
    assert early.is_set()
    late = watch.waiter("nl/a")  # a fresh event: the next read happens after this
    assert not late.is_set()
    async with asyncio.timeout(1):
        await early.wait()
