"""Nodes with ``[workers] verify = 2`` as real processes: `liaison send`, `liaison read` and
`liaison inbox --follow` work end to end; the workers start at the first bulk batch, not
before, and verify only batches (single submits stay in the node's process); a worker
SIGKILLed under load loses nothing and is replaced; a node SIGKILLed leaves no worker
behind, nor does one stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, officer_tls, raw_https, run_cli
from tests.integration.officers import PASSPHRASE, enrol
from tests.integration.test_first_alert import directory_with
from tests.integration.test_live_delivery import CliFollower, until
from tests.waits import PATIENCE_S

WORKERS = {"workers": {"verify": 2}}
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
SEND = ("send", "--subject", "Vehicle sighting", "--text", "Blue van, NL plates",
        "--handling", "H0", "--tlp", "AMBER", "--purpose", "drug trafficking inquiry",
        "--json")


def workers_of(pid: int | None) -> list[int]:
    """The node's verification worker processes (its children running verify_worker)."""
    found = []
    if pid is None:
        return found
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"liaison_net.workers.verify_worker" in cmd:
                found.append(int(child))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def verified(net: Network, nid: str, where: str) -> float:
    status, body = raw_https(net.nodes[nid].client_port, officer_tls(net), node_hostname(nid),
                             b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(f'liaison_verified_total{{where="{where}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_send_read_and_follow_through_nodes_with_verification_workers(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections=WORKERS)
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    follower = CliFollower(net, marie, "follower")
    try:
        async with jan.session() as nl:
            directory = await directory_with(nl, marie.id)
            # The CLI: one `liaison send`, read at the destination with `liaison read`.
            sent = run_cli(*SEND, "--to", marie.id, "--keystore", str(jan.path), env=ENV)
            first = json.loads(sent.stdout)["id"]
            await until(lambda: len(follower.seqs()) >= 1, timeout=PATIENCE_S,
                        what="the CLI's envelope at the follower")
            read = run_cli("read", first, "--keystore", str(marie.path), env=ENV)
            assert "Blue van, NL plates" in read.stdout
            # The library: single submits, verified in nl's own process: no worker yet.
            ids = [first]
            for i in range(10):
                envelope = jan.seal(directory, [marie.id], f"alert {i}".encode())
                ids.append(envelope.header.id_text)
                assert (await nl.submit(envelope.to_bytes())).status == "accepted"
            assert workers_of(net.nodes["nl"].pid) == []
            assert verified(net, "nl", "worker") == 0

            async def batch(tag: str) -> None:
                sealed = [jan.seal(directory, [marie.id], f"{tag} {i}".encode())
                          for i in range(16)]
                results = await nl.submit_many([e.to_bytes() for e in sealed])
                assert [r.status for r in results] == ["accepted"] * 16
                ids.extend(e.header.id_text for e in sealed)

            # The first batch starts the workers; later ones go to them, one killed.
            await batch("first")
            for nid in ("nl", "be"):
                await until(lambda nid=nid: len(workers_of(net.nodes[nid].pid)) == 2,  # type: ignore[misc]
                            timeout=PATIENCE_S, what=f"{nid}'s two workers")
            victim = workers_of(net.nodes["be"].pid)[0]
            for i in range(6):
                await batch(f"batch {i}")
                if i == 2:
                    os.kill(victim, signal.SIGKILL)  # at the destination, mid-stream
            await until(lambda: len(follower.seqs()) >= len(ids), timeout=PATIENCE_S,
                        what="every envelope at the follower")
        async with marie.session() as be:
            inbox = [e for e in await be.inbox_all() if e.kind != "evidence"]
        assert sorted(e.id for e in inbox) == sorted(ids)  # nothing lost, none twice
        assert [e["id"] for e in follower.entries() if e["kind"] != "evidence"] == \
            [e.id for e in inbox]
        # Batches verified by the workers at both nodes, and the killed one replaced.
        assert verified(net, "nl", "worker") >= 16 * 6
        assert verified(net, "be", "worker") >= 1
        await until(lambda: len(workers_of(net.nodes["be"].pid)) == 2
                    and victim not in workers_of(net.nodes["be"].pid),
                    timeout=PATIENCE_S, what="a new worker at be")
        # A node that dies takes its workers with it: their stdin ends.
        orphans = workers_of(net.nodes["nl"].pid)
        net.kill("nl", signal.SIGKILL)
        await until(lambda: not any(alive(p) for p in orphans), timeout=PATIENCE_S,
                    what="nl's workers to exit after nl was killed")
        # A node that stops (SIGTERM) stops its workers before it exits.
        be_workers = workers_of(net.nodes["be"].pid)
        net.kill("be", signal.SIGTERM)
        assert not any(alive(p) for p in be_workers)
    finally:
        follower.stop()
