"""A peer's sender with no peer behind it (its URL is never called): the tests that drive
its passes, offers and back-off by hand on a real store share this one construction."""

from __future__ import annotations

from liaison_net.clock import Clock
from liaison_net.config import DeliveryConfig, Peer
from liaison_net.federation.sender import PeerSender
from liaison_net.metrics import NodeMetrics
from liaison_net.store.node_store import NodeStore


async def _no_push(_peer: str) -> None:
    return None


def offline_sender(store: NodeStore | None, clock: Clock,
                   delivery: DeliveryConfig | None = None) -> PeerSender:
    """NL's sender to BE, over no session."""
    return PeerSender(node_id="nl", peer=Peer(id="be", url="https://127.0.0.1:1"),
                      store=store, session=None,  # type: ignore[arg-type]
                      delivery=delivery or DeliveryConfig(), metrics=NodeMetrics(),
                      directory_push=_no_push, clock=clock)
