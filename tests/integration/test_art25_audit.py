"""LED Art. 25 logs with real nodes: collection, disclosure into named inboxes, consultation
with the tag's purpose and the officer's reason, combination (a forward), erasure
(retention purge) and failed logins each leave their audit entry, never content; the DPO's
`liaison admin audit export` finds them by officer and category, and the chain verifies."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from liaison_net.core import content, crypto
from liaison_net.core.ids import id_from_text
from liaison_net.core.login import login_message
from liaison_net.errors import Malformed, NotFound
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import (
    AuditRow,
    Network,
    audit_rows,
    https,
    officer_tls,
    run_cli,
    wait_for,
)
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol, now_ms
from tests.integration.test_first_alert import directory_with, inbox_ids

ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
SECRET = "Suspect vehicle NL-42-XK crossed at Hazeldonk"
PURPOSE = "cross-border investigation"  # benelux_tag's
TTL_MS, RETAIN_MS = 20_000, 30_000  # the short-lived envelope: purged during the test


def cli(agent: OfficerAgent, *args: str) -> str:
    return run_cli(*args, "--keystore", str(agent.path), env=ENV).stdout


def events(net: Network, nid: str, event: str, envelope_id: bytes | None = None
           ) -> list[AuditRow]:
    return [r for r in audit_rows(net, nid) if r.event == event
            and (envelope_id is None or r.envelope_id == envelope_id)]


async def failed_login(net: Network, nid: str, officer: str, *, challenge: str | None = None,
                       key: crypto.SigningKeyPair | None = None) -> tuple[int, dict[str, str]]:
    """One login attempt over raw HTTP: a fresh challenge signed by ``key`` (a stranger's
    by default), or the given ``challenge`` (hex) that the node never issued."""
    port, ctx, host = net.nodes[nid].client_port, officer_tls(net), node_hostname(nid)
    headers = {"Content-Type": "application/json"}
    if challenge is None:
        status, body = await https(port, ctx, host, "POST", "/api/v1/login/challenge",
                                   data=json.dumps({"officer": officer}), headers=headers)
        assert status == 200, body
        challenge = json.loads(body)["challenge"]
    signer = key or crypto.generate_signing_key()
    signature = crypto.sign(signer, login_message(nid, bytes.fromhex(challenge)))
    status, body = await https(port, ctx, host, "POST", "/api/v1/login", data=json.dumps(
        {"officer": officer, "challenge": challenge, "signature": signature.hex()}),
        headers=headers)
    return status, json.loads(body)


@pytest.mark.slow
async def test_each_art25_operation_leaves_its_entry(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"),
                              sections={"store": {"retention_sweep_s": 0.2}})
    jan, piet = enrol(net, "nl/jdevries"), enrol(net, "nl/pbakker")
    marie, luc = enrol(net, "be/mpeeters"), enrol(net, "be/lclaes")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl, marie.session() as be, luc.session() as be_luc:
        directory = await directory_with(nl, marie.id, piet.id)
        await directory_with(be, jan.id, luc.id)
        # Collection at NL, disclosure to Piet's inbox there and to Marie's at BE.
        env = jan.seal(directory, [marie.id, piet.id], content.encode(
            content.Content(subject="Hazeldonk", text=SECRET)))
        brief = jan.seal(directory, [marie.id], b"short-lived", ttl_ms=TTL_MS,
                         tag=dataclasses.replace(benelux_tag("nl"),
                                                 retain_until=now_ms() + RETAIN_MS))
        for e in (brief, env):
            assert (await nl.submit(e.to_bytes())).status == "accepted"
        assert sorted(await inbox_ids(be, 2, timeout=TTL_MS / 1000)) == sorted(
            [env.header.id_text, brief.header.id_text])

        [accepted] = events(net, "nl", "envelope.accepted", env.id)
        assert accepted.actor == jan.id
        assert accepted.detail["recipients"] == [marie.id, piet.id]
        assert accepted.detail["inboxes"] == [piet.id]
        assert (accepted.detail["purpose"], accepted.detail["handling"],
                accepted.detail["tlp"]) == (PURPOSE, "H0", "AMBER")
        [delivered] = events(net, "be", "envelope.delivered_to_inbox", env.id)
        assert delivered.actor == "nl" and delivered.detail["inboxes"] == [marie.id]
        assert delivered.detail["purpose"] == PURPOSE
        wait_for(lambda: events(net, "nl", "envelope.relayed", env.id),
                 what="NL to audit the transfer to BE")

        # Consultation: Marie reads with a reason, then without; each read is one entry.
        shown = json.loads(cli(marie, "read", env.header.id_text, "--json", "--reason",
                               "case BE-2026/117, Zoë's request"))
        assert SECRET in json.dumps(shown)
        cli(marie, "read", env.header.id_text, "--json")
        consulted = events(net, "be", "envelope.consulted", env.id)
        assert [(r.actor, r.detail.get("reason")) for r in consulted] == [
            (marie.id, "case BE-2026/117, Zoë's request"), (marie.id, None)]
        assert consulted[0].detail["purpose"] == PURPOSE
        assert consulted[0].detail["tlp"] == "AMBER"
        # Refused reads are not consultations: no entry for them.
        with pytest.raises(NotFound):
            await be_luc.fetch(env.header.id_text)
        with pytest.raises(Malformed):
            await be.fetch(env.header.id_text, reason="two\nlines")
        assert len(events(net, "be", "envelope.consulted", env.id)) == 2

        # Combination and disclosure: Marie forwards it to Luc, a colleague at BE.
        out = cli(marie, "forward", env.header.id_text, "--to", luc.id, "--json")
        forward_id = json.loads(out[out.index("{"):])["id"]
        [forwarded] = events(net, "be", "envelope.accepted", id_from_text(forward_id))
        assert forwarded.actor == marie.id
        assert forwarded.detail["forward_of"] == env.header.id_text
        assert forwarded.detail["inboxes"] == [luc.id] and forwarded.detail["consent"] is False
        assert forwarded.detail["purpose"] == PURPOSE  # the tag travels with the forward

        # Failed logins: the claimed officer, the step, the code; one entry per window.
        for _ in range(3):
            status, answer = await failed_login(net, "be", marie.id)
            assert (status, answer["error"]) == (401, "unauthorized")
        status, _ = await failed_login(net, "be", "be/ghost", challenge="00" * 32)
        assert status == 401
        status, _ = await failed_login(net, "be", "be/nobody", challenge="11" * 32)
        assert status == 401
        failed = events(net, "be", "login.failed")
        assert [(r.actor, r.detail) for r in failed] == [
            (marie.id, {"stage": "signature", "code": "unauthorized", "failures": 1}),
            ("be/ghost", {"stage": "challenge", "code": "unauthorized", "failures": 1}),
        ]

    # Erasure: the short-lived envelope is purged at BE at its retain_until.
    wait_for(lambda: events(net, "be", "envelope.purged", brief.id),
             timeout=RETAIN_MS / 1000 + 30, what="BE to purge the short-lived envelope")

    # No entry holds content, a subject or a key.
    for nid in ("nl", "be"):
        for row in audit_rows(net, nid):
            text = json.dumps(row.detail)
            assert "Hazeldonk" not in text and "NL-42-XK" not in text, row

    # The DPO's export: Marie's entries of the last day, and the erasures.
    be_config = str(net.nodes["be"].config)
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    doc = json.loads(run_cli("admin", "audit", "export", "--config", be_config, "--since",
                             since, "--officer", marie.id, "--json").stdout)
    assert doc["node"] == "be"
    found = {(e["event"], tuple(e["categories"])) for e in doc["entries"]}
    assert {("envelope.delivered_to_inbox", ("collection", "disclosure")),
            ("envelope.consulted", ("consultation",)),
            ("envelope.accepted", ("collection", "disclosure", "combination")),
            ("login.failed", ("login",))} <= found
    assert forward_id in {e["envelope"] for e in doc["entries"]}
    erased = json.loads(run_cli("admin", "audit", "export", "--config", be_config, "--since",
                                since, "--category", "erasure", "--json").stdout)
    assert [e["envelope"] for e in erased["entries"]] == [brief.header.id_text]
    for nid in ("nl", "be"):
        verified = json.loads(run_cli("admin", "audit", "verify", "--config",
                                      str(net.nodes[nid].config), "--json").stdout)
        assert verified["ok"] is True, (nid, verified)
