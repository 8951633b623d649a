"""The owner decides, at every layer: an envelope whose tag shares only with BE, NL and LU
never reaches DE-NW. The sending client refuses it, the origin node refuses it when the
client is bypassed, the destination refuses it when a peer relays it anyway; every node
refusal is audited and the audit chains still verify.

Network: NL, BE and DE-NW, real processes; the officers' CLI is the real `liaison` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from liaison_net.client.directory import Directory
from liaison_net.core import codec, crypto
from liaison_net.core.envelope import Envelope
from liaison_net.errors import PolicyRefused
from liaison_net.federation import protocol
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import (
    Network,
    audit_rows,
    drained_row_counts,
    https,
    last_audit_seq,
    officer_tls,
    peer_tls,
    run_cli,
)
from tests.integration.officers import PASSPHRASE, OfficerAgent, bearer_token, benelux_tag, enrol
from tests.integration.test_first_alert import directory_with

BENELUX = frozenset({"be", "nl", "lu"})  # not de-nw


@dataclass
class Net3:
    net: Network
    jan: OfficerAgent  # nl/jdevries, the sender
    marie: OfficerAgent  # be/mpeeters
    klaus: OfficerAgent  # de-nw/kschmidt, whom the tag does not allow
    directory: Directory  # NL's, with every card
    token: str  # jan's bearer token on NL


@pytest.fixture(scope="module")
def net3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net3]:
    net = Network.create(tmp_path_factory.mktemp("ownership"), node_ids=("nl", "be", "de-nw"))
    try:
        jan, marie = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters")
        klaus = enrol(net, "de-nw/kschmidt")
        for nid in net.nodes:
            net.start(nid)

        async def ready() -> tuple[Directory, str]:
            async with jan.session() as nl, klaus.session() as de:
                directory = await directory_with(nl, marie.id, klaus.id)
                await directory_with(de, jan.id)  # DE-NW can verify jan's signature
            return directory, await bearer_token(jan)

        directory, token = asyncio.run(ready())
        yield Net3(net, jan, marie, klaus, directory, token)
    finally:
        net.stop_all()


def benelux_only_to_klaus(n: Net3) -> Envelope:
    """Sealed directly with the core, bypassing the client's policy check."""
    tag = benelux_tag("nl", share_with=BENELUX)
    assert "de-nw" not in tag.share_with
    return n.jan.seal(n.directory, [n.klaus.id], b"Benelux eyes only", tag=tag)


def stored(n: Net3, nid: str, envelope_id: bytes) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(n.net.database(nid), timeout=10)) as db:
        return {table: int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?",
                                      (envelope_id,)).fetchone()[0])
                for table, column in (("envelopes", "id"), ("inbox", "envelope_id"),
                                      ("hops", "envelope_id"))}


NOTHING = {"envelopes": 0, "inbox": 0, "hops": 0}


def cli_send(n: Net3, to: str, *extra: str) -> tuple[int, str, str]:
    proc = run_cli("send", "--to", to, "--subject", "Hazeldonk", "--text", "vehicle seen",
                   "--handling", "H0", "--tlp", "AMBER", "--share-with", ",".join(sorted(BENELUX)),
                   "--purpose", "cross-border investigation", "--keystore", str(n.jan.path),
                   *extra, check=False, env={"LIAISON_PASSPHRASE": PASSPHRASE.decode()})
    return proc.returncode, proc.stdout, proc.stderr


async def relay_as_nl(n: Net3, target: str, *envelopes: bytes) -> list[list[str]]:
    """Post a transaction to ``target`` with NL's real certificate, as NL's sender would."""
    body = codec.pack({"origin": "nl", "txn": crypto.random_bytes(16),
                       "envelopes": list(envelopes)})
    status, answer = await https(n.net.nodes[target].federation_port, peer_tls(n.net, "nl"),
                                 node_hostname(target), "POST", protocol.TRANSACTION_PATH,
                                 data=body, headers={"Content-Type": "application/x-msgpack"})
    assert status == 200, answer[:300]
    return list(codec.unpack(answer, what="answer", max_bytes=1 << 20)["results"])


async def submit_raw(n: Net3, envelope: bytes) -> tuple[int, dict[str, str]]:
    status, answer = await https(
        n.net.nodes["nl"].client_port, officer_tls(n.net), node_hostname("nl"), "POST",
        "/api/v1/envelopes", data=envelope,
        headers={"Content-Type": "application/x-liaison-envelope",
                 "Authorization": f"Bearer {n.token}"})
    return status, json.loads(answer)


def refusals(n: Net3, nid: str, envelope_id: bytes, after: int) -> list[dict[str, str]]:
    return [dict(r.detail, actor=r.actor) for r in audit_rows(n.net, nid, after=after)
            if r.event == "envelope.refused" and r.envelope_id == envelope_id]


async def test_origin_refuses_an_envelope_the_tag_does_not_share_with_the_recipient(
        net3: Net3) -> None:
    """From the CLI, `liaison send` to a DE-NW officer under a Benelux-only tag fails before
    anything is sent, naming policy.share_with; sealed directly and submitted through the
    API (bypassing the client check), NL answers 403 `policy.share_with`, stores nothing and
    audits the refusal naming the rule. Control: the same CLI send to a BE officer works."""
    n = net3
    before = drained_row_counts(n.net, "nl")
    code, out, err = cli_send(n, n.klaus.id)
    assert code == 2, (code, out, err)
    assert "policy.share_with" in err and n.klaus.id in err, err
    assert drained_row_counts(n.net, "nl") == before, "the CLI handed something to the node"

    code, out, err = cli_send(n, n.marie.id, "--json")
    assert code == 0, (out, err)
    assert json.loads(out)["status"] == "accepted"

    env = benelux_only_to_klaus(n)
    seq = last_audit_seq(n.net, "nl")
    async with n.jan.session() as nl:
        with pytest.raises(PolicyRefused) as refused:
            await nl.submit(env.to_bytes())
    assert refused.value.code == "policy.share_with", refused.value
    status, answer = await submit_raw(n, env.to_bytes())
    assert status == 403 and answer["error"] == "policy.share_with", (status, answer)
    assert "share_with" in answer["detail"], answer
    assert stored(n, "nl", env.id) == NOTHING
    found = refusals(n, "nl", env.id, seq)
    assert len(found) == 2, found  # one per submission
    for entry in found:
        assert entry["code"] == "policy.share_with", entry
        assert entry["layer"] == "origin" and entry["actor"] == n.jan.id, entry


async def test_destination_refuses_what_a_peer_relays_against_the_tag(net3: Net3) -> None:
    """NL's certificate relays the Benelux-only envelope to DE-NW anyway: DE-NW refuses it
    with `policy.share_with`, nothing enters its inbox, and its audit log has the refusal.
    Control: an envelope whose tag includes DE-NW, relayed the same way, is accepted."""
    n = net3
    env = benelux_only_to_klaus(n)
    seq = last_audit_seq(n.net, "de-nw")
    results = await relay_as_nl(n, "de-nw", env.to_bytes())
    assert [r[:2] for r in results] == [[protocol.REFUSED, "policy.share_with"]], results
    assert stored(n, "de-nw", env.id) == NOTHING
    found = refusals(n, "de-nw", env.id, seq)
    assert len(found) == 1, found
    assert found[0]["code"] == "policy.share_with" and found[0]["layer"] == "destination"
    assert found[0]["actor"] == "nl" and found[0]["peer"] == "nl", found

    allowed = n.jan.seal(n.directory, [n.klaus.id], b"for DE-NW too",
                         tag=benelux_tag("nl", share_with=BENELUX | {"de-nw"}))
    assert await relay_as_nl(n, "de-nw", allowed.to_bytes()) == [[protocol.ACCEPTED, "", ""]]
    assert stored(n, "de-nw", allowed.id)["inbox"] == 1


async def test_audit_chains_verify_after_the_refusals(net3: Net3) -> None:
    """After an origin refusal at NL and a destination refusal at DE-NW, `liaison admin audit
    verify` passes on both nodes' real logs, and those logs hold the refusals."""
    n = net3
    env = benelux_only_to_klaus(n)
    nl_seq, de_seq = last_audit_seq(n.net, "nl"), last_audit_seq(n.net, "de-nw")
    status, _ = await submit_raw(n, env.to_bytes())
    assert status == 403
    assert (await relay_as_nl(n, "de-nw", env.to_bytes()))[0][1] == "policy.share_with"
    for nid, seq in (("nl", nl_seq), ("de-nw", de_seq)):
        assert [e["code"] for e in refusals(n, nid, env.id, seq)] == ["policy.share_with"]
        proc = run_cli("admin", "audit", "verify", "--config", str(n.net.nodes[nid].config),
                       "--json")
        result = json.loads(proc.stdout)
        assert result["ok"] is True and result["broken_at"] is None, (nid, result)
        assert result["entries"] >= last_audit_seq(n.net, nid) > seq, (nid, result)
