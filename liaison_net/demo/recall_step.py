"""The demo's recall, step (h), issued as `liaison recall` does (core/restriction.py).

Once the TLP:GREEN alert of step (c) has been read everywhere, Jan (who sent it for NL's
unit) recalls it: the update goes to BE, LU and DE-NW, each node purges the content in the
transaction that accepts the update and answers a signed erasure receipt, which Jan's
client verifies (`liaison status`). A recipient's later fetch is refused: only the signed
skeleton is left.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from liaison_net.client import restrictions
from liaison_net.client.directory import Directory
from liaison_net.client.session import NodeSession
from liaison_net.core import sealing
from liaison_net.core.content import Content
from liaison_net.core.envelope import Kind
from liaison_net.core.ids import node_of
from liaison_net.demo.network import DemoError, Officer
from liaison_net.demo.report import Outcome
from liaison_net.demo.story_types import JAN, POLL_S, Sent, now_ms
from liaison_net.errors import Purged


class StoryCore(Protocol):
    sessions: dict[str, NodeSession]
    directories: dict[str, Directory]
    outcome: Outcome

    def officer(self, officer_id: str) -> Officer: ...


async def recall(story: StoryCore, sent: Sent) -> str:
    """Jan recalls ``sent``; wait for every recipient node's erasure receipt; check that
    each recipient's node answers "purged". A line for the progress report."""
    session, ks = story.sessions[JAN], story.officer(JAN).keystore
    directory = await session.directory(now=datetime.now(UTC))
    original = sealing.verify(await session.fetch(sent.id), directory.lookup(), now=None)
    warnings: list[str] = []
    to = await restrictions.addressees(session, ks, directory, original, warnings)
    now = now_ms()
    update = restrictions.seal_update(
        ks, original, Kind.RECALL, original.header.tag,
        recipients=[directory.recipient(o, now=now) for o in to],
        content=Content(subject=f"Recalled: {sent.id}",
                        text="The community alert was sent in error; purge any copy."),
        now=now)
    if (await session.submit(update.to_bytes())).status != "accepted":
        raise DemoError("the NL node did not accept the recall")
    nodes = {node_of(o) for o in to}
    while True:
        receipts = await restrictions.receipts(session, ks, directory, original.id, warnings)
        if nodes <= {r.node for r in receipts if r.action == "recall"}:
            break
        await asyncio.sleep(POLL_S)
    purged = 0
    for officer in to:
        try:
            await story.sessions[officer].fetch(sent.id)
        except Purged:
            purged += 1
    story.outcome.check("the recall reached every node that held the alert",
                        nodes <= {r.node for r in receipts}, ", ".join(sorted(nodes)))
    story.outcome.check("every recipient's node purged the recalled alert",
                        purged == len(to), f"{purged}/{len(to)}")
    return (f"erasure receipts from {', '.join(sorted(nodes))}; "
            f"{purged}/{len(to)} recipients' copies purged")
