"""A node may revoke only keys of its own principals: a peer cannot cut off another
country's officer by naming one of its own officers in the statement."""

from __future__ import annotations

import time

from liaison_net.core import codec, crypto, rotation
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, audit_rows, https, peer_tls
from tests.integration.officers import enrol
from tests.integration.test_first_alert import directory_with


def _lu_key(net: Network) -> crypto.SigningKeyPair:
    return crypto.signing_key_from_seed((net.certs / "lu" / "signing.key").read_bytes())


async def test_peer_cannot_revoke_another_nodes_officer(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be", "lu"))
    jan = enrol(net, "nl/jdevries")
    enrol(net, "lu/cschmit")
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    async with jan.session() as node:
        await directory_with(node, "lu/cschmit")
    now = time.time_ns() // 1_000_000
    # lu signs, as authority over its own officer, a revocation of *jan's* key.
    forged = rotation.sign_revocation(rotation.Revocation(
        rotation.Subject.OFFICER, "lu/cschmit", jan.keystore.signing.key_id, "hostile",
        serial=now, effective=now, authority="lu"), _lu_key(net))
    status, body = await https(
        net.nodes["be"].federation_port, peer_tls(net, "lu"), node_hostname("be"), "POST",
        "/fed/v1/revocations", data=codec.pack({"origin": "lu", "statements": [forged]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert status == 200
    assert codec.unpack(body, what="answer", max_bytes=4096)["results"] == [
        ["refused", "forbidden"]]
    assert any(r.event == "revocation.refused" and r.detail["code"] == "forbidden"
               for r in audit_rows(net, "be"))
    # Jan still works: his node lets him in and his envelopes still cross.
    async with jan.session() as node:
        assert (await node.inbox()).items == []
