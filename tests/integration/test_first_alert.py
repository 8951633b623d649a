"""An alert crosses a border: NL officer -> NL node -> BE node -> BE officer's inbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from liaison_net.client.directory import Directory
from liaison_net.client.session import NodeSession
from liaison_net.core import sealing
from liaison_net.core.ids import id_from_text
from tests.integration.network import Network
from tests.integration.officers import enrol
from tests.waits import PATIENCE_S


async def directory_with(session: NodeSession, *officers: str,
                         timeout: float = PATIENCE_S) -> Directory:
    """Poll the node's directory until every officer's card has federated to it."""
    async with asyncio.timeout(timeout):
        while True:
            directory = await session.directory(now=datetime.now(UTC))
            if all(o in directory.cards for o in officers):
                return directory
            await asyncio.sleep(0.1)


async def inbox_ids(session: NodeSession, expected: int,
                    timeout: float = PATIENCE_S) -> list[str]:
    async with asyncio.timeout(timeout):
        while True:
            entries = [e for e in await session.inbox_all() if e.kind != "evidence"]
            if len(entries) >= expected:
                return [e.id for e in entries]
            await asyncio.sleep(0.2)


async def test_alert_crosses_the_border(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl, marie.session() as be:
        directory = await directory_with(nl, marie.id)
        env = jan.seal(directory, [marie.id], b"Suspect vehicle crossed at Hazeldonk")
        result = await nl.submit(env.to_bytes())
        assert result.status == "accepted"
        ids = await inbox_ids(be, 1)
        assert ids == [env.header.id_text]
        raw = await be.fetch(ids[0])
        be_dir = await directory_with(be, jan.id)
        opened = sealing.verify(raw, be_dir.lookup(), now=None)
        assert sealing.open_envelope(opened, marie.id, [marie.keystore.encryption]) == \
            b"Suspect vehicle crossed at Hazeldonk"
        assert await be.ack(ids[0]) is True
        # The origin records BE's answer in a write that rides on its next group (at most
        # ``ride_s`` later): its status says delivered once that has committed.
        async with asyncio.timeout(PATIENCE_S):
            while (await nl.status(env.header.id_text)).hops["be"].state != "delivered":
                await asyncio.sleep(0.05)
        # Resubmitting the same envelope is a duplicate, never a second inbox entry.
        assert (await nl.submit(env.to_bytes())).status == "duplicate"
        assert id_from_text(ids[0]) == env.id


