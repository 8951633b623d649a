"""Officers' clients believe a node key change only co-signed (issue 18, protocol §19), with
four real nodes and real keystores.

Marie's client (BE) holds NL's node key from her first directory. NL rotates its key with
BE's and LU's co-signatures: Marie's client follows the co-signed chain her node serves,
holds NL's new key, and the "relayed" evidence NL's node signs with it verifies in her
`liaison status`. Then a node key revocation in the old format, signed by NL's key alone
(as stored before §19, or planted by whoever holds NL's key), sits in BE's database: her
client refuses it with a warning in the status view, and NL's card and evidence still
verify. Last, `liaison admin keys apply` at NL does not count LU's co-signature once NL
holds LU's key as revoked, as the peers do.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from liaison_net.client.local_cache import LocalCache
from liaison_net.client.session import NodeSession
from liaison_net.core import content, crypto
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.store.node_store import NodeStore
from tests.integration.cosign import (
    apply,
    config,
    copy_of,
    cosign,
    peer_key_of,
    prepare_rotation,
    rotate,
)
from tests.integration.network import Network, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol, now_ms
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow

NODES = ("nl", "be", "lu", "de-nw")
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
SLOW = 120.0


def nl_key(net: Network) -> crypto.SigningKeyPair:
    return crypto.signing_key_from_seed((net.certs / "nl" / "signing.key").read_bytes())


def session(agent: OfficerAgent) -> NodeSession:
    """A session that keeps the held node keys beside the keystore, as the CLI does."""
    return NodeSession(agent.keystore, cache=LocalCache(agent.path, now_ms=now_ms))


def status(agent: OfficerAgent, envelope_id: str) -> dict[str, Any]:
    proc: subprocess.CompletedProcess[str] = run_cli(
        "status", envelope_id, "--json", "--keystore", str(agent.path), env=ENV)
    return dict(json.loads(proc.stdout))


async def relayed_for(agent: OfficerAgent, envelope_id: str, to: str) -> dict[str, Any]:
    """Poll `liaison status --json` until the "relayed" for ``to`` is in and verified."""
    def check() -> dict[str, Any] | None:
        report = status(agent, envelope_id)
        relayed = [e for e in report["evidence"] if e["step"] == "relayed"
                   and to in e["recipients"]]
        return report if relayed else None

    return dict(await asyncio.to_thread(wait_for, check, timeout=SLOW, interval=0.5,
                                        what=f"the relayed evidence for {to}"))


async def send(agent: OfficerAgent, to: str) -> str:
    async with session(agent) as node:
        directory = await directory_with(node, to)
        envelope = agent.seal(directory, [to], content.encode(content.Content(
            subject="Hazeldonk", text="Suspect vehicle crossed at Hazeldonk")))
        assert (await node.submit(envelope.to_bytes())).status == "accepted"
    return envelope.header.id_text


def node_keys_at(net: Network, nid: str) -> set[str]:
    """The nodes whose signing key ``nid`` serves to its officers: its own and its peers'."""
    rows = json.loads(run_cli("admin", "keys", "list", "--config", config(net, nid),
                              "--json").stdout)
    return {nid} | {r["owner"] for r in rows if r["kind"] == "peer-signing"}


async def test_clients_follow_a_co_signed_node_key_and_refuse_a_node_alone_revocation(
        make_network: type[Network], tmp_path: Path) -> None:
    net = make_network.create(node_ids=NODES)
    jan, marie = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters")
    for nid in NODES:
        net.start(nid)
    old = nl_key(net)
    # BE learns each peer's node key when that peer first reaches it: wait until it holds
    # all four before Marie's client fetches the directory whose keys it will hold.
    await asyncio.to_thread(wait_for, lambda: node_keys_at(net, "be") == set(NODES),
                            timeout=SLOW, what="be to know every node's key")
    async with session(marie) as node:
        first = await directory_with(node, jan.id, marie.id)
    assert first.node_keys["nl"] == old.public
    held, cosigners = LocalCache(marie.path, now_ms=now_ms).load_node_keys(marie.keystore)
    assert held["nl"] == old.public  # what her client holds from now on
    assert cosigners == frozenset(NODES)

    # NL rotates with BE's and LU's co-signatures; BE takes the new key.
    rotated = rotate(net, "nl", ("be", "lu"), tmp_path)
    await asyncio.to_thread(wait_for, lambda: peer_key_of(net, "be", "nl")
                            == rotated["new_key_id"], timeout=SLOW, what="be to take nl's key")
    new = nl_key(net)
    assert new.key_id.hex() == rotated["new_key_id"]

    # Marie writes to Jan: NL's node signs "relayed" with its new key, and her client,
    # holding NL's old key, believes the new one through the co-signed chain.
    eid = await send(marie, jan.id)
    report = await relayed_for(marie, eid, jan.id)
    [relayed] = [e for e in report["evidence"] if e["step"] == "relayed"]
    assert relayed["verified"] and relayed["signer"] == "nl/node", relayed
    assert not any("kept the key" in w for w in report["warnings"]), report["warnings"]
    assert status(marie, eid)["warnings"] == []  # fetched again, holding the new key
    held, _ = LocalCache(marie.path, now_ms=now_ms).load_node_keys(marie.keystore)
    assert held["nl"] == new.public

    # A node key revocation signed by NL's key alone, in the old format, reaches BE's
    # database (BE is stopped and restarted by PID around it): it revokes NL's current key.
    net.kill("be")
    alone = Revocation(Subject.NODE, "nl", new.key_id, "forged by whoever holds nl's key",
                       serial=now_ms(), effective=now_ms() - 1000, authority="nl")
    store = NodeStore(net.database("be"), "be")
    await store.open()
    try:
        await store.keys.add_revocation(alone, sign_revocation(alone, new), now=now_ms(),
                                        forward_to=[], source="nl")
    finally:
        await store.close()
    net.start("be")

    # Marie's client refuses it, says so in the status view, and nothing NL signed with
    # its current key stops verifying: Jan's card, the "relayed" evidence.
    report = status(marie, eid)
    assert any("signed by the node alone is not believed" in w for w in report["warnings"]), \
        report["warnings"]
    [relayed] = [e for e in report["evidence"] if e["step"] == "relayed"]
    assert relayed["verified"], relayed
    async with session(marie) as node:
        directory = await node.directory(now=datetime.now(UTC))
    assert jan.id in directory.cards and new.key_id not in directory.revoked
    assert directory.lookup()(new.key_id) is not None

    # `liaison admin keys apply` leaves out a co-signer whose key nl holds as revoked, as
    # the peers do: be and lu co-sign, lu's key is revoked at nl, so one counts of two.
    net.kill("nl")
    lu = crypto.signing_key_from_seed((net.certs / "lu" / "signing.key").read_bytes())
    lu_revoked = Revocation(Subject.NODE, "lu", lu.key_id, "seen in a breach", serial=1,
                            effective=now_ms() - 1000, authority="lu")
    store = NodeStore(net.database("nl"), "nl")
    await store.open()
    try:
        await store.keys.add_revocation(lu_revoked, sign_revocation(lu_revoked, lu),
                                        now=now_ms(), forward_to=[], source="lu")
    finally:
        await store.close()
    net.start("nl")
    statement = copy_of(prepare_rotation(net, "nl"), tmp_path / "second.keychange")
    cosign(net, statement, "be", "lu")
    refused = run_cli("admin", "keys", "apply", str(statement), "--config", config(net, "nl"),
                      check=False)
    assert refused.returncode != 0 and "cosign_threshold" in refused.stderr, refused.stderr
    assert "(be)" in refused.stderr, refused.stderr
    cosign(net, statement, "de-nw")
    assert apply(net, "nl", statement)["cosigned_by"] == ["be", "de-nw"]  # lu not counted
