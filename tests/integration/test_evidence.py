"""Signed delivery evidence end to end, across three real nodes (nl, be, lu).

Jan (NL) sends one alert to Marie (BE) and Claude (LU). `liaison status --json` on Jan's
machine shows, in turn: accepted (signed by NL's node), relayed for both (signed by BE's and
LU's nodes), delivered once Marie's `liaison inbox` lists it, opened once `liaison read`
shows it (both signed by Marie). Forgeries reach Jan's inbox through real nodes and are
refused by his client, with a warning, and never count as progress: Claude's "opened" in
Marie's name (signed by Claude, or naming Marie as maker), and a node statement from LU's
real node key claiming to be BE's node.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from liaison_net.core import codec, content, crypto, sealing
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.evidence import (
    EVIDENCE_TTL_MS,
    Statement,
    Step,
    evidence_tag,
    sign_statement,
    verify_statement,
)
from liaison_net.core.ids import node_of, node_principal
from liaison_net.pki import certificates
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, https, peer_tls, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol, now_ms
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}


def cli(agent: OfficerAgent, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--keystore", str(agent.path), env=ENV)


def status(agent: OfficerAgent, envelope_id: str) -> tuple[dict[str, Any], str]:
    """`liaison status ID --json` as the sender sees it: (report, stderr)."""
    proc = cli(agent, "status", envelope_id, "--json")
    return json.loads(proc.stdout), proc.stderr


def steps_of(report: dict[str, Any], officer: str) -> dict[str, Any]:
    return next(r for r in report["recipients"] if r["officer"] == officer)


async def status_when(what: str, agent: OfficerAgent, envelope_id: str,
                      holds: Callable[[dict[str, Any]], bool],
                      timeout: float = 40) -> dict[str, Any]:
    """Poll the sender's `liaison status --json` until ``holds(report)``."""
    def check() -> dict[str, Any] | None:
        report, _ = status(agent, envelope_id)
        return report if holds(report) else None

    return dict(await asyncio.to_thread(wait_for, check, timeout=timeout, interval=0.3,
                                        what=what))


async def until(what: str, condition: Callable[[], Any], timeout: float = 40) -> Any:
    return await asyncio.to_thread(wait_for, condition, timeout=timeout, interval=0.3,
                                   what=what)


async def forged_by_officer(forger: OfficerAgent, to: str, statement: Statement) -> str:
    """An evidence envelope a misbehaving client builds and hands to its own node."""
    async with forger.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        now = now_ms()
        carrier = sealing.seal(
            sender=forger.id, sender_key=forger.keystore.signing,
            recipients=[directory.recipient(to, now=now)],
            tag=evidence_tag(own_node=node_of(forger.id), sender_node=node_of(to),
                             now=now),
            plaintext=sign_statement(statement, forger.keystore.signing), now=now,
            expires=now + EVIDENCE_TTL_MS, kind=Kind.EVIDENCE, ref=statement.envelope)
        assert (await node.submit(carrier.to_bytes())).status == "accepted"
    return carrier.header.id_text


async def forged_by_node(net: Network, node_id: str, to: OfficerAgent,
                         statement: Statement) -> str:
    """An evidence envelope signed with ``node_id``'s real node key, relayed to the sender's
    node over real mutual TLS: what a compromised node can do."""
    key = crypto.signing_key_from_seed(
        certificates.NodePaths.under(net.certs / node_id, node_id).signing_key.read_bytes())
    now = now_ms()
    home = node_of(to.id)
    carrier = sealing.seal(
        sender=node_principal(node_id), sender_key=key,
        recipients=[sealing.RecipientKey(to.id, to.keystore.encryption.public)],
        tag=evidence_tag(own_node=node_id, sender_node=home, now=now),
        plaintext=sign_statement(statement, key), now=now, expires=now + EVIDENCE_TTL_MS,
        kind=Kind.EVIDENCE, ref=statement.envelope)
    answer_status, body = await https(
        net.nodes[home].federation_port, peer_tls(net, node_id),
        node_hostname(home), "POST", "/fed/v1/transactions",
        data=codec.pack({"origin": node_id, "txn": crypto.random_bytes(16),
                         "envelopes": [carrier.to_bytes()]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert answer_status == 200
    assert codec.unpack(body, what="answer", max_bytes=4096)["results"][0][0] == "accepted"
    return carrier.header.id_text


async def test_each_evidence_step_reaches_the_sender_and_forgeries_are_refused(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be", "lu"))
    jan, marie, claude = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters"), \
        enrol(net, "lu/cschmit")
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    for agent in (jan, marie, claude):
        async with agent.session() as node:
            await directory_with(node, jan.id, marie.id, claude.id)

    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        alert: Envelope = jan.seal(directory, [marie.id, claude.id], content.encode(
            content.Content(subject="Hazeldonk", text="Suspect vehicle crossed at Hazeldonk")))
        assert (await node.submit(alert.to_bytes())).status == "accepted"
    eid = alert.header.id_text

    # 1. Accepted: signed by NL's node, in Jan's inbox before his submit returned.
    report, _ = status(jan, eid)
    assert report["sender"] == jan.id
    for officer in (marie.id, claude.id):
        assert steps_of(report, officer)["accepted"] is not None
        assert steps_of(report, officer)["delivered"] is None
    accepted = [e for e in report["evidence"] if e["step"] == "accepted"]
    assert len(accepted) == 1 and accepted[0]["verified"] and accepted[0]["signer"] == "nl/node"

    # 2. Relayed for both: each signed by the destination node, back through federation.
    report = await status_when("relayed for both", jan, eid, lambda r: all(
        steps_of(r, o)["relayed"] for o in (marie.id, claude.id)))
    signers = {e["recipients"][0]: e["signer"] for e in report["evidence"]
               if e["step"] == "relayed"}
    assert signers == {marie.id: "be/node", claude.id: "lu/node"}
    assert all(steps_of(report, o)["state"] == "relayed" for o in (marie.id, claude.id))
    assert all(steps_of(report, o)["delivered"] is None for o in (marie.id, claude.id))

    # 3. Forgeries, before Marie has even listed her inbox: none may count for her.
    forged = [
        # Claude, honestly signing as himself, claims Marie opened it.
        await forged_by_officer(claude, jan.id, Statement(
            Step.OPENED, alert.id, (marie.id,), claude.id, now_ms())),
        # Claude signs, with his own key, a statement that names Marie as its maker.
        await forged_by_officer(claude, jan.id, Statement(
            Step.OPENED, alert.id, (marie.id,), marie.id, now_ms())),
        # LU's real node key signs a "relayed" that claims to come from BE's node.
        await forged_by_node(net, "lu", jan, Statement(
            Step.RELAYED, alert.id, (marie.id,), "be/node", now_ms())),
        # ... or honestly from LU's node, into an inbox on BE.
        await forged_by_node(net, "lu", jan, Statement(
            Step.RELAYED, alert.id, (marie.id,), "lu/node", now_ms())),
    ]

    def all_forgeries_seen() -> tuple[dict[str, Any], str] | None:
        got = status(jan, eid)
        seen = {e["envelope"]: e for e in got[0]["evidence"]}
        return got if all(f in seen for f in forged) else None

    report, warnings = await until("the forgeries at NL", all_forgeries_seen)
    judged = {e["envelope"]: e for e in report["evidence"]}
    errors = [judged[f]["error"] for f in forged]
    assert not any(judged[f]["verified"] for f in forged)
    assert "lu/cschmit cannot attest opened for be/mpeeters: only be/mpeeters can" in errors[0]
    assert "claims to be by be/mpeeters but was signed by lu/cschmit" in errors[1]
    assert "claims to be by be/node but was signed by lu/node" in errors[2]
    assert "lu/node cannot attest relayed for be/mpeeters: only be/node can" in errors[3]
    assert judged[forged[0]]["claimed"]["step"] == "opened"
    for f in forged:
        assert f"warning: evidence {f} refused:" in warnings
    assert steps_of(report, marie.id)["opened"] is None
    assert steps_of(report, marie.id)["state"] == "relayed"
    assert report["warnings"] and len(report["warnings"]) == len(forged)

    # 4. Delivered: Marie's `liaison inbox` lists it, her client signs "delivered".
    listed = cli(marie, "inbox", "--json")
    assert eid in [e["id"] for e in json.loads(listed.stdout)]
    assert "warning" not in listed.stderr
    report = await status_when("delivered for Marie", jan, eid,
                               lambda r: steps_of(r, marie.id)["delivered"] is not None)
    assert steps_of(report, marie.id)["state"] == "delivered"
    assert steps_of(report, marie.id)["opened"] is None
    assert steps_of(report, claude.id)["delivered"] is None
    cli(marie, "inbox")  # listing again attests nothing new

    # 5. Opened: `liaison read` shows it, her client signs "opened".
    shown = cli(marie, "read", eid)
    assert "Suspect vehicle crossed at Hazeldonk" in shown.stdout
    report = await status_when("opened for Marie", jan, eid,
                               lambda r: steps_of(r, marie.id)["opened"] is not None)
    marie_row = steps_of(report, marie.id)
    assert marie_row["state"] == "opened"
    assert marie_row["accepted"] <= marie_row["relayed"] <= marie_row["delivered"] \
        <= marie_row["opened"]
    assert steps_of(report, claude.id)["state"] == "relayed"
    mine = [e for e in report["evidence"] if e["verified"] and e["recipients"] == [marie.id]]
    assert sorted(e["step"] for e in mine) == ["delivered", "opened", "relayed"]
    assert all(e["signer"] == marie.id for e in mine if e["step"] != "relayed")

    # Claude reads without listing first: delivered and opened at once.
    cli(claude, "read", eid)
    report = await status_when("opened for Claude", jan, eid,
                               lambda r: steps_of(r, claude.id)["opened"] is not None)
    assert steps_of(report, claude.id)["delivered"] is not None

    # Every verified statement stands on its own: its bytes verify again, away from the
    # envelope that carried them, under the directory.
    async with jan.session() as node:
        lookup = (await node.directory(now=datetime.now(UTC))).lookup()
    for e in report["evidence"]:
        if e["verified"]:
            again = verify_statement(base64.b64decode(e["statement"]), lookup)
            assert again.signer.principal == e["signer"] == e["by"]
            assert again.key_id.hex() == e["signer_key_id"]
    assert sum(1 for e in report["evidence"] if e["verified"]) == 1 + 2 + 2 * 2

    # The table officers read, with the warnings on stderr.
    table = cli(jan, "status", eid)
    assert "opened" in table.stdout and marie.id in table.stdout
    assert "4 refused" in table.stdout and "warning: evidence" in table.stderr
    # Evidence stays out of the everyday inbox listing.
    assert all(e["kind"] != "evidence" for e in json.loads(cli(jan, "inbox", "--json").stdout))
    # Recipients see the node's view of the envelope, with no evidence about it.
    theirs, _ = status(marie, eid)
    assert theirs["evidence"] == [] and theirs["recipients"] == []
    # The timing is the makers' own: nothing was attested before it happened.
    assert marie_row["opened"] <= time.time_ns() // 1_000_000


async def test_status_shows_expired_per_recipient_and_the_origins_own_relay(
        make_network: type[Network]) -> None:
    """BE is down past expiry: Marie's row says expired (from the outbox), while Piet, on
    the origin node itself, has "relayed" signed by NL's node."""
    net = make_network.create(node_ids=("nl", "be"))
    jan, piet, marie = enrol(net, "nl/jdevries"), enrol(net, "nl/pbakker"), \
        enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as node:
        directory = await directory_with(node, marie.id, piet.id)
        net.kill("be", signal.SIGKILL)  # and it stays down
        alert = jan.seal(directory, [marie.id, piet.id], b"meet at Maastricht station",
                         ttl_ms=1500)
        assert (await node.submit(alert.to_bytes())).status == "accepted"
    eid = alert.header.id_text

    report = await status_when("the hop to BE to expire", jan, eid,
                               lambda r: steps_of(r, marie.id)["expired"])
    marie_row, piet_row = steps_of(report, marie.id), steps_of(report, piet.id)
    assert marie_row["state"] == "expired" and marie_row["accepted"] is not None
    assert marie_row["relayed"] is None and marie_row["refused"] is None
    assert piet_row["state"] == "relayed" and not piet_row["expired"]
    relayed = [e for e in report["evidence"] if e["verified"] and e["step"] == "relayed"]
    assert [(e["recipients"], e["signer"]) for e in relayed] == [([piet.id], "nl/node")]
    assert "expired undelivered" in cli(jan, "status", eid).stdout
