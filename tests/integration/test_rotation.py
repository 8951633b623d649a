"""Key rotation and revocation under live traffic, with three real nodes.

While officers on nl, be and lu send to each other without pause, the test rotates, one
after another, nl's node signing key, be's TLS certificate and an officer's keys: every
envelope is delivered exactly once and stays readable. Then a revocation: the time until
every node refuses the revoked key is measured and printed, and the refusal is audited.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from datetime import UTC, datetime

import pytest
from cryptography import x509

from liaison_net.client import keystore as ks
from liaison_net.client.directory import Directory
from liaison_net.core import codec, crypto, sealing
from liaison_net.errors import Revoked
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import (
    Network,
    https,
    peer_tls,
    run_cli,
    wait_for,
)
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol
from tests.integration.test_faults import inbox_rows
from tests.integration.test_first_alert import directory_with
from tests.integration.test_hostile_peer import garbage_tally

pytestmark = pytest.mark.slow

ROUTES = {"nl/jdevries": "be/mpeeters", "be/mpeeters": "lu/cschmit",
          "lu/cschmit": "nl/jdevries"}


class Traffic:
    """Each officer sends to the next, continuously, from its *current* keystore file."""

    def __init__(self, officers: dict[str, OfficerAgent]) -> None:
        self.officers = officers
        self.sent: dict[str, list[bytes]] = {o: [] for o in ROUTES.values()}
        self.stop = asyncio.Event()
        self.errors: list[str] = []

    def reload(self, officer: str) -> None:
        agent = self.officers[officer]
        agent.keystore = ks.load(agent.path, PASSPHRASE)

    async def run_one(self, sender: str) -> None:
        to = ROUTES[sender]
        while not self.stop.is_set():
            agent = self.officers[sender]
            async with agent.session() as node:
                keystore = agent.keystore
                directory = await node.directory(now=datetime.now(UTC))
                for _ in range(20):  # refresh keys and directory every 20 envelopes
                    if self.stop.is_set() or agent.keystore is not keystore:
                        break
                    env = agent.seal(directory, [to], f"{sender} {time.time()}".encode())
                    await node.submit(env.to_bytes())
                    self.sent[to].append(env.id)
                    await asyncio.sleep(0.02)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for sender in ROUTES:
                tasks.create_task(self.run_one(sender))


def served_tls_serial(net: Network, nid: str) -> int:
    ctx = ssl.create_default_context(cafile=str(net.ca_cert))
    with socket.create_connection(("127.0.0.1", net.nodes[nid].client_port), timeout=5) as s, \
            ctx.wrap_socket(s, server_hostname=node_hostname(nid)) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def node_signing_key_id(net: Network, nid: str) -> str:
    rows = json.loads(run_cli("admin", "keys", "list", "--config",
                              str(net.nodes[nid].config), "--json").stdout)
    return next(r["key_id"] for r in rows if r["kind"] == "node-signing")


def peer_key_of(net: Network, at: str, peer: str) -> str | None:
    rows = json.loads(run_cli("admin", "keys", "list", "--config",
                              str(net.nodes[at].config), "--json").stdout)
    return next((r["key_id"] for r in rows if r["kind"] == "peer-signing"
                 and r["owner"] == peer), None)


async def read_all(agent: OfficerAgent, expected: list[bytes]) -> int:
    """Open every envelope in the inbox with a fresh directory and the keystore on disk."""
    keystore = ks.load(agent.path, PASSPHRASE)
    opened = 0
    async with agent.session() as node:
        directory: Directory = await node.directory(now=datetime.now(UTC))
        for entry in await node.inbox_all():
            if entry.kind == "evidence":
                continue  # delivery evidence about what this officer sent
            env = sealing.verify(await node.fetch(entry.id), directory.lookup(), now=None)
            assert env.id in expected
            sealing.open_envelope(env, agent.id, keystore.encryption_keys)
            opened += 1
    return opened


async def test_rotations_under_live_traffic_then_revocation(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be", "lu"))
    officers = {o: enrol(net, o) for o in ROUTES}
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    async with officers["nl/jdevries"].session() as node:
        await directory_with(node, *ROUTES)
    for o in ("be/mpeeters", "lu/cschmit"):
        async with officers[o].session() as node:
            await directory_with(node, *ROUTES)

    traffic = Traffic(officers)
    runner = asyncio.create_task(traffic.run())
    try:
        await asyncio.sleep(1)  # traffic flows before the first rotation
        # 1. nl's node signing key: the running node switches; peers learn the new key.
        old_nl = node_signing_key_id(net, "nl")
        out = json.loads(run_cli("admin", "rotate-key", "node", "--config",
                                 str(net.nodes["nl"].config), "--ca", str(net.certs),
                                 "--json").stdout)
        assert out["old_key_id"] == old_nl
        await asyncio.to_thread(wait_for, lambda: all(
            peer_key_of(net, peer, "nl") == out["new_key_id"] for peer in ("be", "lu")),
            timeout=30, what="be and lu to learn nl's new signing key")
        # 2. be's TLS certificate: new connections get the new one, without a restart.
        before = served_tls_serial(net, "be")
        out = json.loads(run_cli("admin", "rotate-key", "tls", "--config",
                                 str(net.nodes["be"].config), "--ca", str(net.certs),
                                 "--json").stdout)
        await asyncio.to_thread(wait_for, lambda: served_tls_serial(net, "be") != before,
                                timeout=30, what="be to serve its new TLS certificate")
        assert format(served_tls_serial(net, "be"), "x") == out["serial"]
        # 3. jan's own keys, with the officer CLI; the test then sends with the new ones.
        jan = officers["nl/jdevries"]
        old_jan = jan.keystore.signing.key_id
        rotated = json.loads(run_cli("officer", "rotate", "--keystore", str(jan.path),
                                     "--json",
                                     env={"LIAISON_PASSPHRASE": PASSPHRASE.decode()}).stdout)
        traffic.reload("nl/jdevries")
        assert jan.keystore.signing.key_id != old_jan
        assert rotated["signing_key_id"] == jan.keystore.signing.key_id.hex()
        assert len(jan.keystore.encryption_keys) == 2  # the old one stays to read old mail
        await asyncio.sleep(1.5)  # traffic keeps flowing on the new keys
    finally:
        traffic.stop.set()
        await runner
    assert not traffic.errors

    for to, ids in traffic.sent.items():
        nid = to.split("/")[0]
        count = len(ids)
        await asyncio.to_thread(wait_for, lambda nid=nid, to=to, n=count:
                                len(inbox_rows(net, nid, to)) >= n, timeout=60,
                                what=f"{count} envelopes for {to}")
        rows = inbox_rows(net, nid, to)
        assert sorted(rows) == sorted(ids), f"{to}: lost or doubled envelopes"
        assert await read_all(officers[to], ids) == len(ids)
    total = sum(len(v) for v in traffic.sent.values())
    print(f"\nrotation under traffic: {total} envelopes, each delivered once and readable")

    # Revocation of claude's key by his home node, lu: measured until every node refuses it.
    claude = officers["lu/cschmit"]
    started = time.monotonic()
    run_cli("admin", "revoke", "officer", claude.id, "--reason", "laptop stolen",
            "--config", str(net.nodes["lu"].config))

    def everywhere() -> bool:
        return all(claude.keystore.signing.key_id in revoked_key_ids(net, nid)
                   for nid in ("nl", "be", "lu"))

    await asyncio.to_thread(wait_for, everywhere, timeout=30, interval=0.05,
                            what="the revocation to reach every node")
    elapsed = time.monotonic() - started
    print(f"revocation refused by every node within {elapsed:.2f} s")

    # Claude's node refuses his login; nl refuses an envelope he signed, relayed by lu.
    with pytest.raises(Revoked):
        async with claude.session() as node:
            await node.inbox()
    async with officers["nl/jdevries"].session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        assert claude.keystore.signing.key_id in directory.revoked
    env = claude.seal(directory, ["nl/jdevries"], b"signed with a revoked key")
    status, body = await https(
        net.nodes["nl"].federation_port, peer_tls(net, "lu"), node_hostname("nl"), "POST",
        "/fed/v1/transactions",
        data=codec.pack({"origin": "lu", "txn": crypto.random_bytes(16),
                         "envelopes": [env.to_bytes()]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert status == 200
    assert codec.unpack(body, what="answer", max_bytes=1 << 20)["results"][0][:2] == \
        ["refused", "revoked"]
    # No key verifies it (the only one is revoked): tallied per peer and window.
    _, codes = await asyncio.to_thread(garbage_tally, net, "nl", after=0, actor="lu")
    assert codes.get("revoked") == 1, "the refusal of the revoked key is audited"
    for nid in ("nl", "be", "lu"):
        run_cli("admin", "audit", "verify", "--config", str(net.nodes[nid].config))


def revoked_key_ids(net: Network, nid: str) -> set[bytes]:
    rows = json.loads(run_cli("admin", "revocations", "--config", str(net.nodes[nid].config),
                              "--json").stdout)
    return {bytes.fromhex(r["key_id"]) for r in rows}
