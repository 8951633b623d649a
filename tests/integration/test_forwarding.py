"""Forwarding under the ownership tag, across three real nodes.

An H2 alert from NL to BE may not be passed on to LU without NL's consent. Each layer
refuses it on its own, tested by bypassing the layers before it: the forwarder's client,
the forwarder's node (BE), the destination node (LU), and the receiving officer's client
(the envelope planted in LU's database, as a compromised node would). With the owner's
consent it passes every layer, for exactly the recipient consented to, and the owner gets
a signed disclosure receipt. The grant closes the consent request, and the consent
allows exactly one forward: a second is refused by the forwarder's node and by the
destination node.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime

import pytest

from liaison_net.core import codec, content, crypto, sealing
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.ownership import Handling
from liaison_net.core.retention import make_skeleton
from liaison_net.errors import PolicyRefused
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, audit_rows, https, peer_tls, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol
from tests.integration.test_first_alert import directory_with, inbox_ids

pytestmark = pytest.mark.slow
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}


def cli(agent: OfficerAgent, *args: str, check: bool = True) -> tuple[int, str]:
    proc = run_cli(*args, "--keystore", str(agent.path), env=ENV, check=check)
    return proc.returncode, proc.stdout + proc.stderr


async def forged_forward(agent: OfficerAgent, original: Envelope, to: str,
                         consent: bytes | None = None) -> Envelope:
    """What a client that skips its own check would build."""
    async with agent.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
    now = time.time_ns() // 1_000_000
    return sealing.seal(sender=agent.id, sender_key=agent.keystore.signing,
                        recipients=[directory.recipient(to, now=now)], tag=original.header.tag,
                        plaintext=content.encode(content.Content(subject="Fwd", text="x")),
                        now=now, expires=now + 3_600_000,
                        kind=Kind.MESSAGE, ref=original.id, consent=consent,
                        original=make_skeleton(original.to_bytes()))


def refusals(net: Network, nid: str, code: str) -> int:
    return sum(1 for r in audit_rows(net, nid)
               if r.event == "envelope.refused" and r.detail.get("code") == code)


async def test_h2_forward_refused_at_each_layer_and_allowed_with_consent(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be", "lu"))
    jan, marie = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters")
    claude, other = enrol(net, "lu/cschmit"), enrol(net, "lu/amartin")
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    for agent, wanted in ((jan, marie.id), (marie, claude.id), (marie, other.id),
                          (claude, marie.id)):
        async with agent.session() as node:
            await directory_with(node, wanted, jan.id)

    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        text = content.encode(content.Content(subject="Not to be disseminated",
                                              text="H2: ask NL before passing this on"))
        original = jan.seal(directory, [marie.id], text,
                            tag=benelux_tag("nl", handling=Handling.H2))
        await node.submit(original.to_bytes())
    async with marie.session() as node:
        await inbox_ids(node, 1)
    oid = original.header.id_text

    # 1. The forwarder's client refuses, with the reason and how to ask the owner.
    code, out = cli(marie, "forward", oid, "--to", claude.id, check=False)
    assert code == 2 and "policy.handling_consent" in out
    assert (f"`liaison consent request {oid} --for {claude.id} --reason TEXT`, then "
            f"`liaison forward {oid} --to {claude.id} --consent-from REPLY_ID`") in out

    # 2. The forwarder's node refuses a forward its client did not check.
    before = refusals(net, "be", "policy.handling_consent")
    with pytest.raises(PolicyRefused) as refused:
        async with marie.session() as node:
            await node.submit((await forged_forward(marie, original, claude.id)).to_bytes())
    assert refused.value.code == "policy.handling_consent"
    assert refusals(net, "be", "policy.handling_consent") == before + 1

    # 3. The destination node refuses it when a peer relays it anyway.
    forward = await forged_forward(marie, original, claude.id)
    status, body = await https(
        net.nodes["lu"].federation_port, peer_tls(net, "be"), node_hostname("lu"), "POST",
        "/fed/v1/transactions",
        data=codec.pack({"origin": "be", "txn": crypto.random_bytes(16),
                         "envelopes": [forward.to_bytes()]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert status == 200
    assert codec.unpack(body, what="answer", max_bytes=4096)["results"][0][:2] == [
        "refused", "policy.handling_consent"]
    assert refusals(net, "lu", "policy.handling_consent") == 1

    # 4. The receiving client refuses it even if a compromised LU node delivers it.
    with sqlite3.connect(net.database("lu")) as db:
        db.execute("INSERT INTO envelopes (id, raw, sender, kind, precedence, created, expires,"
                   " retain_until, received) VALUES (?, ?, ?, 'message', 0, 1, 2, 3, 4)",
                   (forward.id, forward.to_bytes(), marie.id))
        db.execute("INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, 5)",
                   (claude.id, forward.id))
    code, out = cli(claude, "read", forward.header.id_text, check=False)
    assert code == 2 and "policy.handling_consent" in out

    # The owner is asked, and consents to exactly one recipient.
    cli(marie, "consent", "request", oid, "--for", claude.id, "--reason", "joint case LU-BE")
    async with jan.session() as node:
        requests = [e for e in await node.inbox_all() if e.kind == "request"]
        assert len(requests) == 1
    _, granted = cli(jan, "consent", "grant", oid, "--forwarder", marie.id, "--for", claude.id,
                     "--out", str(net.root / "consent.bin"))
    reply_id = granted.split("reply ")[1].split()[0].rstrip(",")
    async with marie.session() as node:
        await asyncio.wait_for(inbox_ids(node, 2), 30)

    # The grant answered the consent request: it is no longer open, on either side.
    async with jan.session() as node:
        assert await node.requests() == []
    async with marie.session() as node:
        assert await node.requests() == []

    # A consent for Claude does not authorise Amélie, at the client or at the node.
    code, out = cli(marie, "forward", oid, "--to", other.id, "--consent-from", reply_id,
                    check=False)
    assert code == 2 and "policy.handling_consent" in out
    consent = (net.root / "consent.bin").read_bytes()
    with pytest.raises(PolicyRefused):
        async with marie.session() as node:
            await node.submit((await forged_forward(marie, original, other.id, consent))
                              .to_bytes())

    # With it, the forward to Claude passes every layer; Claude reads it.
    _, out = cli(marie, "forward", oid, "--to", claude.id, "--consent-from", reply_id,
                 "--json")
    forwarded = json.loads(out[out.index("{"):])["id"]
    await asyncio.to_thread(wait_for, lambda: forwarded in cli(claude, "inbox", "--json")[1],
                            timeout=30, what="the consented forward at LU")
    _, shown = cli(claude, "read", forwarded, "--json")
    assert json.loads(shown[shown.index("{"):])["ref"] == oid
    # LED Art. 25: a disclosure with consent, into Claude's inbox, naming its original.
    [into_inbox] = [r for r in audit_rows(net, "lu") if r.event == "envelope.delivered_to_inbox"
                    and r.detail.get("forward_of") == oid]
    assert into_inbox.detail["consent"] is True and into_inbox.detail["inboxes"] == [claude.id]

    # One consent, one forward: a second forward under it is refused by BE (the origin),
    # and by LU when a compromised BE relays one anyway; each audited with its code.
    code, out = cli(marie, "forward", oid, "--to", claude.id, "--consent-from", reply_id,
                    check=False)
    assert code == 2 and "policy.consent_used" in out, out
    assert refusals(net, "be", "policy.consent_used") == 1
    again = await forged_forward(marie, original, claude.id, consent)
    status, body = await https(
        net.nodes["lu"].federation_port, peer_tls(net, "be"), node_hostname("lu"), "POST",
        "/fed/v1/transactions",
        data=codec.pack({"origin": "be", "txn": crypto.random_bytes(16),
                         "envelopes": [again.to_bytes()]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert status == 200
    assert codec.unpack(body, what="answer", max_bytes=4096)["results"][0][:2] == [
        "refused", "policy.consent_used"]
    assert refusals(net, "lu", "policy.consent_used") == 1
    with sqlite3.connect(net.database("lu")) as db:
        assert db.execute("SELECT COUNT(*) FROM inbox WHERE envelope_id = ?",
                          (again.id,)).fetchone() == (0,)

    # The owner gets a signed disclosure receipt from LU naming what was done.
    def receipt() -> bool:
        _, inbox = cli(jan, "inbox", "--json")
        for entry in json.loads(inbox[inbox.index("["):]):
            if entry["kind"] == "notice":
                _, text = cli(jan, "read", entry["id"], "--json")
                shown = json.loads(text[text.index("{"):])["content"]
                if shown["subject"] == "Notice: disclosure":
                    return f"forward: {forwarded}" in shown["text"]
        return False

    await asyncio.to_thread(wait_for, receipt, timeout=30, interval=0.5,
                            what="the disclosure receipt at NL")
