"""Restriction updates and recalls across three real nodes (core/restriction.py).

NL's officer sends to BE; BE forwards to LU, once as the tag allows and once with NL's
consent (NL gets a disclosure receipt for each, and its updates follow both). A restriction
makes a later forward that the new tag forbids refused at BE; a relaxing update is refused
by the issuing client and by NL's node; an update by anyone but the original's sender (a
colleague at NL with a real keystore, a recipient at BE, a certified NL peer relaying the
colleague's, a compromised BE planting it in an inbox) is refused at every hop, the reading
client included. A recall reaches LU, two hops from the owner: BE and LU purge the content,
answer signed erasure receipts that `liaison status` shows, and refuse to read or forward
it. A SIGKILL of the owner's node with a recall in flight loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime

import pytest

from liaison_net.client import restrictions
from liaison_net.core import codec, content, crypto, sealing
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.core.retention import make_skeleton
from liaison_net.errors import PolicyRefused
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import (
    TEST_DELIVERY,
    Network,
    audit_rows,
    https,
    peer_tls,
    run_cli,
    wait_for,
)
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol
from tests.integration.test_first_alert import directory_with, inbox_ids

pytestmark = pytest.mark.slow
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}


def cli(agent: OfficerAgent, *args: str, check: bool = True) -> tuple[int, str]:
    proc = run_cli(*args, "--keystore", str(agent.path), env=ENV, check=check)
    return proc.returncode, proc.stdout + proc.stderr


def refusals(net: Network, nid: str, code: str) -> int:
    return sum(1 for r in audit_rows(net, nid)
               if r.event == "envelope.refused" and r.detail.get("code") == code)


def purged(net: Network, nid: str, envelope: bytes) -> bool:
    with sqlite3.connect(net.database(nid)) as db:
        row = db.execute("SELECT purged FROM envelopes WHERE id = ?", (envelope,)).fetchone()
    return row is not None and row[0] is not None


async def forged_update(agent: OfficerAgent, original: Envelope, kind: Kind, to: list[str], *,
                        tag: object = None) -> Envelope:
    """What a client that skips its own checks would build."""
    async with agent.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
    now = time.time_ns() // 1_000_000
    return sealing.seal(sender=agent.id, sender_key=agent.keystore.signing,
                        recipients=[directory.recipient(o, now=now) for o in to],
                        tag=tag if tag is not None else original.header.tag,  # type: ignore
                        plaintext=content.encode(content.Content(subject="Update", text="x")),
                        now=now, expires=now + 3_600_000, kind=kind, ref=original.id,
                        original=make_skeleton(original.to_bytes()))


async def relay_as(net: Network, peer: str, to: str, envelope: Envelope) -> list[object]:
    """A certified ``peer`` hands ``envelope`` to node ``to`` directly (a hostile peer)."""
    status, body = await https(
        net.nodes[to].federation_port, peer_tls(net, peer), node_hostname(to), "POST",
        "/fed/v1/transactions",
        data=codec.pack({"origin": peer, "txn": crypto.random_bytes(16),
                         "envelopes": [envelope.to_bytes()]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert status == 200
    result: list[object] = codec.unpack(body, what="answer", max_bytes=4096)["results"][0]
    return result


async def receipts_from(agent: OfficerAgent, original: Envelope) -> dict[str, str]:
    async with agent.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        found = await restrictions.receipts(node, agent.keystore, directory, original.id, [])
    return {r.node: r.action for r in found}


def told_of_forward(owner: OfficerAgent, original: Envelope, to: OfficerAgent) -> bool:
    """A disclosure receipt in the owner's inbox names ``to`` as a forward's recipient."""
    async def go() -> list[str]:
        async with owner.session() as node:
            directory = await node.directory(now=datetime.now(UTC))
            return await restrictions.addressees(node, owner.keystore, directory, original, [])
    return to.id in asyncio.run(go())


async def until_receipts(agent: OfficerAgent, original: Envelope,
                         nodes: set[str]) -> dict[str, str]:
    async def poll() -> dict[str, str]:
        while not nodes <= set(got := await receipts_from(agent, original)):
            await asyncio.sleep(0.5)
        return got

    return await asyncio.wait_for(poll(), 120)


async def test_restrict_and_recall_follow_the_information(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be", "lu"))
    jan, anna = enrol(net, "nl/jdevries"), enrol(net, "nl/avisser")
    marie, claude = enrol(net, "be/mpeeters"), enrol(net, "lu/cschmit")
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    for agent, wanted in ((jan, marie.id), (marie, claude.id), (claude, jan.id),
                          (anna, marie.id)):
        async with agent.session() as node:
            await directory_with(node, wanted, jan.id)

    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        alert = jan.seal(directory, [marie.id], content.encode(content.Content(
            subject="Courier route", text="H2: ask NL before passing this on")),
            tag=benelux_tag("nl", handling=Handling.H2))
        tip = jan.seal(directory, [marie.id], content.encode(content.Content(
            subject="Lorry", text="may be forwarded in the Benelux")), tag=benelux_tag("nl"))
        await node.submit(alert.to_bytes())
        await node.submit(tip.to_bytes())
    async with marie.session() as node:
        await inbox_ids(node, 2)
    aid, tid = alert.header.id_text, tip.header.id_text

    # --- a forward the tag allows without consent: NL is told of it all the same ----------
    _, out = cli(marie, "forward", tid, "--to", claude.id, "--json")
    tip_forward = json.loads(out[out.index("{"):])["id"]
    async with claude.session() as node:
        await inbox_ids(node, 1)
    await asyncio.to_thread(wait_for, lambda: told_of_forward(jan, tip, claude), timeout=120,
                            interval=0.5, what="the disclosure receipt of the tip's forward")

    # --- a restriction reaches the forward too; a later forward it forbids is refused -----
    code, out = cli(jan, "restrict", tid, "--share-with", "nl,be", "--tlp", "AMBER+STRICT",
                    "--reason", "the LU case was closed", "--json")
    assert code == 0, out
    assert json.loads(out[out.index("{"):])["to"] == sorted([marie.id, claude.id])
    assert (await until_receipts(jan, tip, {"be", "nl", "lu"})) == {
        "be": "restrict", "nl": "restrict", "lu": "restrict"}
    _, shown = cli(claude, "read", tip_forward)
    assert "restricted on " in shown and "by nl/jdevries" in shown
    _, shown = cli(marie, "read", tid)  # the reader sees the current restriction
    assert "restricted on " in shown and "by nl/jdevries" in shown
    assert "TLP:AMBER+STRICT, share_with be,nl" in shown
    code, out = cli(marie, "forward", tid, "--to", claude.id, check=False)
    assert code == 2 and "policy.tlp_own_organisation" in out, out  # refused by BE's node
    assert "under the restriction nl/jdevries placed" in out
    assert refusals(net, "be", "policy.tlp_own_organisation") == 1

    # A relaxing update: refused by the issuing client, and by the owner's node for a client
    # that skips the check.
    code, out = cli(jan, "restrict", tid, "--tlp", "GREEN", "--community", "all",
                    "--reason", "x", check=False)
    assert code == 2 and "policy.update_relaxes" in out, out
    loose = benelux_tag("nl", share_with=frozenset({"be", "nl", "lu", "de-nw"}))
    with pytest.raises(PolicyRefused) as refused:
        async with jan.session() as node:
            await node.submit((await forged_update(jan, tip, Kind.RESTRICT, [marie.id],
                                                   tag=loose)).to_bytes())
    assert refused.value.code == "policy.update_relaxes"
    # ... and a relaxation of the restriction already applied (tighter than the original,
    # looser than the update): refused where the earlier update is applied.
    wider = benelux_tag("nl", tlp=Tlp.RED, share_with=frozenset({"be", "nl", "lu"}))
    with pytest.raises(PolicyRefused) as refused:
        async with jan.session() as node:
            await node.submit((await forged_update(jan, tip, Kind.RESTRICT, [marie.id],
                                                   tag=wider)).to_bytes())
    assert refused.value.code == "policy.update_relaxes"

    # --- not the owner: refused at every hop ----------------------------------------------
    code, out = cli(anna, "recall", aid, "--reason", "not mine", check=False)
    assert code == 2 and "not_found" in out, out  # her client: not hers to fetch
    colleague = await forged_update(anna, alert, Kind.RECALL, [marie.id])
    with pytest.raises(PolicyRefused) as refused:  # her node
        async with anna.session() as node:
            await node.submit(colleague.to_bytes())
    assert refused.value.code == "policy.update_not_owner"
    assert (await relay_as(net, "nl", "be", colleague))[:2] == [  # a hostile NL peer
        "refused", "policy.update_not_owner"]
    with sqlite3.connect(net.database("be")) as db:  # a compromised BE plants it anyway
        db.execute("INSERT INTO envelopes (id, raw, sender, kind, precedence, created, expires,"
                   " retain_until, received) VALUES (?, ?, ?, 'recall', 0, 1, 2, 3, 4)",
                   (colleague.id, colleague.to_bytes(), anna.id))
        db.execute("INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, 5)",
                   (marie.id, colleague.id))
    code, out = cli(marie, "read", colleague.header.id_text, check=False)  # her client
    assert code == 2 and "policy.update_not_owner" in out, out
    recipient = await forged_update(marie, alert, Kind.RECALL, [claude.id])
    with pytest.raises(PolicyRefused) as refused:  # a recipient, at her node
        async with marie.session() as node:
            await node.submit(recipient.to_bytes())
    assert refused.value.code == "policy.owner_not_signer"
    assert (await relay_as(net, "be", "lu", recipient))[:2] == [
        "refused", "policy.owner_not_signer"]
    assert not purged(net, "be", alert.id)

    # --- a consented forward to LU, then a recall that reaches it -------------------------
    consent_file = net.root / "consent.bin"
    cli(jan, "consent", "grant", aid, "--forwarder", marie.id, "--for", claude.id,
        "--out", str(consent_file))
    _, out = cli(marie, "forward", aid, "--to", claude.id, "--consent", str(consent_file),
                 "--json")
    forwarded = json.loads(out[out.index("{"):])["id"]
    async with claude.session() as node:
        await inbox_ids(node, 2)
    await asyncio.to_thread(wait_for, lambda: told_of_forward(jan, alert, claude), timeout=120,
                            interval=0.5, what="the disclosure receipt at NL")
    code, out = cli(jan, "recall", aid, "--reason", "the source withdrew it", "--json")
    assert json.loads(out[out.index("{"):])["to"] == sorted([marie.id, claude.id])
    got = await until_receipts(jan, alert, {"be", "lu"})
    assert got["be"] == got["lu"] == "recall"
    assert purged(net, "be", alert.id)
    with sqlite3.connect(net.database("lu")) as db:
        (fwd_raw_id,) = db.execute("SELECT id FROM envelopes WHERE ref = ? AND kind = "
                                   "'message'", (alert.id,)).fetchone()
    assert purged(net, "lu", bytes(fwd_raw_id))
    code, out = cli(claude, "read", forwarded, check=False)
    assert code == 2 and "recalled by its owner" in out, out
    code, out = cli(marie, "forward", aid, "--to", claude.id, check=False)
    assert code == 2 and "purged" in out, out
    _, inbox = cli(marie, "inbox", "--all")
    assert "recalled" in inbox
    status = run_cli("status", aid, "--json", "--keystore", str(jan.path), env=ENV)
    shown = json.loads(status.stdout)  # a warning on stderr: only the skeleton is left
    assert {(r["node"], r["action"]) for r in shown["restrictions"]} >= {
        ("be", "recall"), ("lu", "recall")}
    events = [r.event for r in audit_rows(net, "lu")]
    assert "restriction.recall" in events and "envelope.recalled" in events

    # --- SIGKILL with a recall in flight: nothing lost ------------------------------------
    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        late = jan.seal(directory, [marie.id], content.encode(content.Content(
            subject="Later", text="to be recalled")), tag=benelux_tag("nl"))
        await node.submit(late.to_bytes())
    async with marie.session() as node:
        async with asyncio.timeout(120):
            while late.header.id_text not in [e.id for e in await node.inbox_all()]:
                await asyncio.sleep(0.2)
    net.kill("be")
    cli(jan, "recall", late.header.id_text, "--reason", "sent in error")
    net.kill("nl")  # the recall is accepted (durable), queued for BE, not delivered
    net.start("nl")
    net.start("be")
    assert (await until_receipts(jan, late, {"be"}))["be"] == "recall"
    assert purged(net, "be", late.id)


async def test_a_recall_applied_then_sigkilled_still_owes_its_receipt_once(
        make_network: type[Network]) -> None:
    """BE applies a recall (content purged, receipt owed: one commit) and is SIGKILLed before
    its effects drain issues the receipt; restarted, it issues it, exactly once."""
    held = {"delivery": TEST_DELIVERY, "effects": {"drain_delay_s": 600}}
    net = make_network.create(node_ids=("nl", "be"), sections=held)
    jan, marie = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters")
    for nid in ("nl", "be"):
        net.start(nid)
    for agent, wanted in ((jan, marie.id), (marie, jan.id)):
        async with agent.session() as node:
            await directory_with(node, wanted)
    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        alert = jan.seal(directory, [marie.id], content.encode(content.Content(
            subject="Wrong person", text="to be recalled")), tag=benelux_tag("nl"))
        await node.submit(alert.to_bytes())
    async with marie.session() as node:
        await inbox_ids(node, 1)
    cli(jan, "recall", alert.header.id_text, "--reason", "wrong person")

    def owed_at_be() -> bool:
        with sqlite3.connect(net.database("be")) as db:
            return db.execute("SELECT COUNT(*) FROM restrictions").fetchone() == (1,)

    await asyncio.to_thread(wait_for, owed_at_be, what="the recall applied at BE")
    assert purged(net, "be", alert.id)  # in the same commit as the owed receipt
    net.kill("be")
    net.kill("nl")
    net.write_configs(sections={"delivery": TEST_DELIVERY, "effects": {"poll_s": 0.2}})
    net.start("nl")
    net.start("be")
    assert (await until_receipts(jan, alert, {"be"}))["be"] == "recall"
    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        found = await restrictions.receipts(node, jan.keystore, directory, alert.id, [])
    assert [r.node for r in found].count("be") == 1
