"""Four-eyes release with real nodes (issue 19): a TLP:RED alert waits at NL until a second
officer of the sender's unit approves it, then reaches BE with the approval, which BE and
the reader's client verify. The sender cannot approve their own; an approval for another
envelope, or none, is refused by BE when a hostile NL posts it; a rejection and an expiry
tell the sender; a SIGKILL while held loses nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest

from liaison_net.client import approvals, reading
from liaison_net.client.directory import Directory
from liaison_net.client.session import NodeSession
from liaison_net.core import approval as four_eyes
from liaison_net.core import codec, content, crypto, sealing
from liaison_net.core.envelope import Envelope
from liaison_net.core.ownership import Tlp
from liaison_net.errors import LiaisonError, PolicyRefused
from liaison_net.federation import protocol
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, audit_rows, peer_tls, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol, now_ms
from tests.integration.test_first_alert import directory_with, inbox_ids

FOUR_EYES = {"sweep_s": 0.2, "hold_hours": 24,
             "approvers": {"liaison": ["nl/jdevries", "nl/akramer", "be/mpeeters"]}}
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
MSGPACK = "application/x-msgpack"


@dataclass
class FourEyes:
    net: Network
    jan: OfficerAgent  # nl/jdevries: sends
    anna: OfficerAgent  # nl/akramer: approves (same unit, same node)
    marie: OfficerAgent  # be/mpeeters: receives
    nl_dir: Directory
    be_dir: Directory


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FourEyes]:
    net = Network.create(tmp_path_factory.mktemp("four-eyes"), node_ids=("nl", "be"),
                         sections={"four_eyes": FOUR_EYES})
    try:
        jan, anna = enrol(net, "nl/jdevries"), enrol(net, "nl/akramer")
        marie = enrol(net, "be/mpeeters")
        for nid in net.nodes:
            net.start(nid)

        async def ready() -> tuple[Directory, Directory]:
            async with jan.session() as nl, marie.session() as be:
                return (await directory_with(nl, marie.id, anna.id),
                        await directory_with(be, jan.id, anna.id))

        nl_dir, be_dir = asyncio.run(ready())
        yield FourEyes(net, jan, anna, marie, nl_dir, be_dir)
    finally:
        net.stop_all()


def red(four: FourEyes, text: bytes, *, ttl_ms: int = 3_600_000) -> Envelope:
    plaintext = content.encode(content.Content(subject="RED alert", text=text.decode()))
    return four.jan.seal(four.nl_dir, [four.marie.id], plaintext, ttl_ms=ttl_ms,
                         tag=benelux_tag("nl", tlp=Tlp.RED))


def hold_row(net: Network, nid: str, envelope: Envelope) -> tuple[Any, ...] | None:
    with sqlite3.connect(net.database(nid), timeout=10) as db:
        row = db.execute("SELECT state, decided_by, reason FROM holds WHERE envelope_id = ?",
                         (envelope.id,)).fetchone()
        hops = db.execute("SELECT COUNT(*) FROM hops WHERE envelope_id = ?",
                          (envelope.id,)).fetchone()[0]
    return None if row is None else (*row, hops)


async def notices(session: NodeSession, agent: OfficerAgent, kind: str,
                  ref: Envelope) -> dict[str, Any]:
    """Wait for the node notice of type ``kind`` about ``ref`` in ``agent``'s inbox."""
    directory = await directory_with(session, agent.id)
    async with asyncio.timeout(120):
        while True:
            for entry in await session.inbox_all():
                if entry.kind != "notice":
                    continue
                env = sealing.verify(await session.fetch(entry.id), directory.lookup(),
                                     now=None)
                if env.header.ref != ref.id:
                    continue
                fields = reading.believed_notice(
                    env, sealing.open_envelope(env, agent.id, [agent.keystore.encryption]),
                    reader_node=agent.id.split("/")[0])
                if fields["type"] == kind:
                    return fields
            await asyncio.sleep(0.2)


async def decide(session: NodeSession, agent: OfficerAgent, directory: Directory,
                 envelope_id: str, *, approve: bool, reason: str = "") -> dict[str, Any]:
    held = approvals.review(await session.held_envelope(envelope_id), directory, envelope_id)
    statement = approvals.decision(held, approver=agent.id, key=agent.keystore.signing,
                                   approve=approve, reason=reason, now=now_ms())
    return await session.decide_held(envelope_id, statement)


async def test_a_held_red_alert_leaves_only_once_a_second_officer_approves(
        four: FourEyes) -> None:
    net, jan, anna, marie = four.net, four.jan, four.anna, four.marie
    alert = red(four, b"Target moves tonight")
    eid = alert.header.id_text
    async with jan.session() as nl, anna.session() as nl2, marie.session() as be:
        submitted = await nl.submit(alert.to_bytes())
        assert (submitted.status, submitted.held) == ("accepted", True)
        assert hold_row(net, "nl", alert) == ("held", None, None, 0)  # no hop: not relayed
        waiting = await notices(nl2, anna, "four-eyes-waiting", alert)
        assert waiting["sender"] == jan.id
        status = await nl.status(eid)
        assert status.hold is not None and status.hold.state == "held" and not status.hops
        # The sender cannot be the second pair of eyes, even with a well-formed statement.
        with pytest.raises(PolicyRefused) as err:
            await decide(nl, jan, four.nl_dir, eid, approve=True)
        assert err.value.code == "policy.four_eyes_self"
        assert hold_row(net, "nl", alert) == ("held", None, None, 0)
        # Nor does the approver's signature over another envelope release this one.
        other = red(four, b"another alert")
        with pytest.raises(PolicyRefused) as err:
            await nl2.decide_held(eid, approvals.decision(
                other, approver=anna.id, key=anna.keystore.signing, approve=True, reason="",
                now=now_ms()))
        assert err.value.code == "policy.four_eyes_mismatch"
        assert hold_row(net, "nl", alert) == ("held", None, None, 0)

        # The approver lists it (CLI, JSON) and approves it (CLI).
        listed = json.loads(run_cli("approvals", "--json", "--keystore", str(anna.path),
                                    env=ENV).stdout)
        assert [(r["id"], r["role"]) for r in listed] == [(eid, "approver")]
        run_cli("approve", eid, "--keystore", str(anna.path), env=ENV)

        assert await inbox_ids(be, 1) == [eid]
        statement = await be.approval(eid)
        released = approvals.released_by(
            sealing.verify(await be.fetch(eid), four.be_dir.lookup(), now=None), statement,
            four.be_dir)
        assert released is not None and (released.sender, released.approver) == (jan.id,
                                                                                 anna.id)
        status = await nl.status(eid)
        assert status.hold is not None and (status.hold.state, status.hold.by) == (
            "approved", anna.id)
        await notices(nl, jan, "four-eyes-approved", alert)
        shown = run_cli("status", eid, "--keystore", str(jan.path), env=ENV).stdout
        assert f"approved by {anna.id}" in shown
        read = run_cli("read", eid, "--keystore", str(marie.path), env=ENV).stdout
        assert f"approved by {anna.id} (verified)" in read
    events = {(r.event, r.actor) for r in audit_rows(net, "nl") if r.envelope_id == alert.id}
    assert {("envelope.held", jan.id), ("envelope.approval_refused", jan.id),
            ("envelope.approved", anna.id)} <= events


async def test_rejection_and_expiry_tell_the_sender_and_send_nothing(four: FourEyes) -> None:
    jan, anna = four.jan, four.anna
    rejected = red(four, b"Not this one")
    expiring = red(four, b"Nobody looks", ttl_ms=3_000)  # the hold ends with its expiry
    async with jan.session() as nl, anna.session() as nl2:
        for env in (rejected, expiring):
            assert (await nl.submit(env.to_bytes())).status == "accepted"
        shown = run_cli("approvals", "--keystore", str(anna.path), env=ENV).stdout
        assert rejected.header.id_text in shown and "approver" in shown
        run_cli("reject", rejected.header.id_text, "--reason", "source not yet evaluated",
                "--keystore", str(anna.path), env=ENV)
        told = await notices(nl, jan, "four-eyes-rejected", rejected)
        assert (told["by"], told["reason"]) == (anna.id, "source not yet evaluated")
        await notices(nl, jan, "four-eyes-expired", expiring)
        with pytest.raises(LiaisonError, match=r"already|expired"):
            await decide(nl2, anna, four.nl_dir, expiring.header.id_text, approve=True)
    assert hold_row(four.net, "nl", rejected) == ("rejected", anna.id,
                                                  "source not yet evaluated", 0)
    assert hold_row(four.net, "nl", expiring)[0::3] == ("expired", 0)  # type: ignore[index]


async def test_a_sigkill_while_held_loses_nothing(four: FourEyes) -> None:
    net, jan, anna, marie = four.net, four.jan, four.anna, four.marie
    alert = red(four, b"Survives a crash")
    async with jan.session() as nl:
        assert (await nl.submit(alert.to_bytes())).status == "accepted"
    net.kill("nl")
    net.start("nl")
    async with anna.session() as nl2, marie.session() as be:
        await decide(nl2, anna, four.nl_dir, alert.header.id_text, approve=True)
        wait_for(lambda: hold_row(net, "nl", alert) == ("approved", anna.id, None, 1),
                 what="the released hop")
        async with asyncio.timeout(120):
            while alert.header.id_text not in await inbox_ids(be, 1):
                await asyncio.sleep(0.2)
    with sqlite3.connect(net.database("be"), timeout=10) as db:
        assert db.execute("SELECT COUNT(*) FROM inbox WHERE envelope_id = ?",
                          (alert.id,)).fetchone()[0] == 1


async def _post_as_nl(net: Network, envelope: Envelope,
                      approval: bytes | None) -> list[Any]:
    body: dict[str, Any] = {"origin": "nl", "txn": crypto.random_bytes(16),
                            "envelopes": [envelope.to_bytes()]}
    if approval is not None:
        body["approvals"] = [[envelope.id, approval]]
    connector = aiohttp.TCPConnector(ssl=peer_tls(net, "nl"), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s, s.post(
            f"https://127.0.0.1:{net.nodes['be'].federation_port}{protocol.TRANSACTION_PATH}",
            data=codec.pack(body), headers={"Content-Type": MSGPACK},
            server_hostname=node_hostname("be")) as resp:
        assert resp.status == 200, await resp.text()
        answer = codec.unpack(await resp.read(), what="answer", max_bytes=1 << 20)
    result: list[Any] = answer["results"][0]
    return result


async def test_a_hostile_peer_cannot_release_without_a_second_officer(
        four: FourEyes) -> None:
    """NL's real TLS certificate posts to BE, as a compromised NL would, RED envelopes
    really signed by jan: without approval, approved by jan himself, by anna for another
    envelope or other bytes, by an officer of another node. Each is refused with its own
    code and stores nothing; the honest one is accepted."""
    jan, anna, marie = four.jan, four.anna, four.marie
    net = four.net

    def statement(env: Envelope, by: OfficerAgent, **changes: Any) -> bytes:
        made = four_eyes.make(env, approver=by.id, decision=four_eyes.Decision.APPROVE,
                              at=now_ms())
        return four_eyes.sign(replace(made, **changes), by.keystore.signing)

    other = red(four, b"another")
    cases = [
        (None, "policy.four_eyes_missing"),
        (lambda e: statement(e, jan), "policy.four_eyes_self"),
        (lambda e: statement(other, anna), "policy.four_eyes_mismatch"),
        (lambda e: statement(e, anna, envelope=other.id), "policy.four_eyes_mismatch"),
        (lambda e: statement(e, anna, digest=four_eyes.envelope_digest(other.to_bytes())),
         "policy.four_eyes_mismatch"),
        (lambda e: statement(e, marie), "policy.four_eyes_foreign"),
        (lambda e: statement(e, anna, unit="someone-else"), "policy.four_eyes_unit"),
    ]
    for make, code in cases:
        env = red(four, b"forged release")
        result = await _post_as_nl(net, env, None if make is None else make(env))
        assert result[:2] == [protocol.REFUSED, code], result
        with sqlite3.connect(net.database("be"), timeout=10) as db:
            assert db.execute("SELECT COUNT(*) FROM envelopes WHERE id = ?",
                              (env.id,)).fetchone()[0] == 0
    honest = red(four, b"released properly")
    assert (await _post_as_nl(net, honest, statement(honest, anna)))[0] == protocol.ACCEPTED
    refused = [r for r in audit_rows(net, "be") if r.event == "envelope.refused"
               and str(r.detail.get("code", "")).startswith("policy.four_eyes")]
    assert len(refused) >= len(cases)
