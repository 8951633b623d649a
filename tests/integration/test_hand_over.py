"""An officer's envelope reaches its peer's sender at its commit, in memory (issue 16,
light-load latency; federation/inflight.py), and the outbox stays the truth.

Real node processes. First, envelopes submitted one at a time while both nodes run go out
as handed over (NL's ``liaison_handed_total`` counts them). Then envelopes queued while BE
is down, whose hand-over dies with NL (SIGKILL), are found in the outbox by the restarted
NL (its count stays 0). Every envelope reaches BE's inbox exactly once, NL records each
relay once, and no answer ever names a hop already answered (``hop.event_refused``: an
envelope sent twice).
"""

from __future__ import annotations

import signal

import pytest

from liaison_net.client.directory import Directory
from liaison_net.core.envelope import Envelope
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, officer_tls, raw_https, wait_for
from tests.integration.officers import OfficerAgent
from tests.integration.test_faults import (
    assert_exactly_once,
    backoff_attempts,
    inbox_rows,
    setup_pair,
    submit_all,
)
from tests.integration.test_pipelined_delivery import relayed_once

pytestmark = pytest.mark.slow


def handed(net: Network, nid: str, peer: str) -> float:
    """How many envelopes ``nid`` sent to ``peer`` as handed over (its /metrics)."""
    status, body = raw_https(net.nodes[nid].client_port, officer_tls(net), node_hostname(nid),
                             b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(f'liaison_handed_total{{peer="{peer}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def sealed(jan: OfficerAgent, directory: Directory, to: str, n: int,
           what: str) -> list[Envelope]:
    return [jan.seal(directory, [to], f"{what} {i}".encode()) for i in range(n)]


def raws(envelopes: list[Envelope]) -> list[bytes]:
    return [e.to_bytes() for e in envelopes]


async def one_at_a_time(jan: OfficerAgent, envelopes: list[Envelope], net: Network,
                        officer: str) -> None:
    """Submit each envelope once the one before is in the inbox: a light load."""
    for i, envelope in enumerate(envelopes):
        before = len(inbox_rows(net, "be", officer))
        assert await submit_all(jan, [envelope.to_bytes()]) == {0}, f"envelope {i} refused"
        wait_for(lambda before=before: len(inbox_rows(net, "be", officer)) > before,
                 interval=0.02, what=f"envelope {i} in the inbox")


async def test_handed_over_and_outbox_only_envelopes_each_delivered_once(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan, marie, directory = await setup_pair(net)
    light = sealed(jan, directory, marie.id, 6, "light")
    await one_at_a_time(jan, light, net, marie.id)
    # Most go as handed over: one may meet the sender's periodic read of the outbox.
    assert handed(net, "nl", "be") >= 3

    net.kill("be", signal.SIGKILL)
    queued = sealed(jan, directory, marie.id, 4, "queued")
    assert await submit_all(jan, raws(queued)) == set(range(4))
    wait_for(lambda: backoff_attempts(net, "nl", "be") >= 1, what="NL to back off from BE")
    net.kill("nl", signal.SIGKILL)  # the hand-over of ``queued`` dies with NL
    net.start("be")
    net.start("nl")
    assert_exactly_once(net, "be", marie.id, raws(light + queued))
    assert handed(net, "nl", "be") == 0  # the restarted NL read them from its outbox

    # Both nodes up again: handed over once more, and still once each.
    more = sealed(jan, directory, marie.id, 4, "more")
    await one_at_a_time(jan, more, net, marie.id)
    assert handed(net, "nl", "be") >= 1
    every = light + queued + more
    assert_exactly_once(net, "be", marie.id, raws(every))
    relayed_once(net, "nl", {e.id for e in every})
    assert "hop.event_refused" not in net.nodes["nl"].log.read_text(errors="replace")
