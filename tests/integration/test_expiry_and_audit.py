"""Expiry yields a signed non-delivery notice; the audit chain verifies and names an edit."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from datetime import UTC, datetime

from liaison_net.core import codec, sealing
from liaison_net.core.envelope import Kind
from tests.integration.network import Network, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, enrol
from tests.integration.test_first_alert import directory_with


async def test_envelope_to_a_node_down_past_expiry_yields_signed_notice(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id)
        net.kill("be", signal.SIGKILL)  # and it stays down
        env = jan.seal(directory, [marie.id], b"meet at Maastricht station", ttl_ms=1500)
        assert (await nl.submit(env.to_bytes())).status == "accepted"
        async with asyncio.timeout(30):
            while True:
                notices = [e for e in await nl.inbox_all() if e.kind == "notice"]
                if notices:
                    break
                await asyncio.sleep(0.2)
        raw = await nl.fetch(notices[0].id)
        directory = await nl.directory(now=datetime.now(UTC))
        notice = sealing.verify(raw, directory.lookup(), now=None)  # signed by the NL node
        assert notice.header.sender == "nl/node"
        assert notice.header.kind is Kind.NOTICE
        assert notice.header.ref == env.id
        content = codec.unpack(sealing.open_envelope(notice, jan.id, [jan.keystore.encryption]),
                               what="notice", max_bytes=4096)
        assert content["type"] == "non-delivery" and content["node"] == "be"
        assert content["envelope"] == env.id
        status = await nl.status(env.header.id_text)
        assert status.hops["be"].state == "expired"
    # The officer's own CLI shows the notice as a notice.
    shown = json.loads(run_cli("read", notices[0].id, "--keystore", str(jan.path), "--json",
                               env={"LIAISON_PASSPHRASE": PASSPHRASE.decode()}).stdout)
    assert shown["content"]["subject"] == "Notice: non-delivery"
    assert f"envelope: {env.header.id_text}" in shown["content"]["text"]


async def test_audit_chain_verifies_then_names_the_edited_entry(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id)
        for i in range(5):
            await nl.submit(jan.seal(directory, [marie.id], f"alert {i}".encode()).to_bytes())

    def relayed() -> int:
        with sqlite3.connect(net.database("nl")) as db:
            return int(db.execute("SELECT COUNT(*) FROM audit_named WHERE event = "
                                  "'envelope.relayed'").fetchone()[0])

    wait_for(lambda: relayed() == 5, timeout=30, what="5 relays audited")
    config = str(net.nodes["nl"].config)
    ok = json.loads(run_cli("admin", "audit", "verify", "--config", config, "--json").stdout)
    assert ok["ok"] is True and ok["entries"] >= 11  # card, 5 accepted, 5 relayed
    with sqlite3.connect(net.database("nl")) as db:
        seq = db.execute("SELECT seq FROM audit_named WHERE event = 'envelope.accepted' "
                         "ORDER BY seq LIMIT 1 OFFSET 2").fetchone()[0]
        db.execute("UPDATE audit SET actor = 'nl/someone-else' WHERE seq = ?", (seq,))
    broken = run_cli("admin", "audit", "verify", "--config", config, check=False)
    assert broken.returncode == 1
    assert f"entry {seq}" in broken.stdout + broken.stderr
