"""What a node owes survives a crash between the decision and the drain (issue 15, item 1).

Real node processes whose effects drain is held back (``[effects] drain_delay_s``, a test
knob) are SIGKILLed once the decision is committed and before anything owed was issued;
restarted without the delay, they issue it, exactly once: the sender gets one "accepted"
and one "relayed" per recipient, or one non-delivery notice for an expired hop.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

import pytest

from liaison_net.core import crypto, sealing
from liaison_net.core.envelope import Envelope
from liaison_net.core.evidence import claimed_statement
from liaison_net.core.ids import node_principal
from liaison_net.pki import certificates
from tests.integration.network import TEST_DELIVERY, Network, wait_for
from tests.integration.officers import OfficerAgent, enrol
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow
HELD = {"delivery": TEST_DELIVERY, "effects": {"drain_delay_s": 600}}
FREE = {"delivery": TEST_DELIVERY, "effects": {"poll_s": 0.2}}


def _query(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return list(db.execute(sql, args).fetchall())


def _owed(net: Network, nid: str) -> int:
    return int(_query(net.database(nid), "SELECT COUNT(*) FROM effects")[0][0])  # type: ignore[arg-type]


def _issued(net: Network, nid: str, kind: str, about: bytes) -> list[bytes]:
    """The raw envelopes of ``kind`` about ``about`` stored on ``nid``."""
    return [bytes(r[0]) for r in _query(  # type: ignore[arg-type]
        net.database(nid), "SELECT raw FROM envelopes WHERE kind = ? AND ref = ?",
        (kind, about))]


def _node_keys(net: Network) -> sealing.KeyLookup:
    keys = {}
    for nid in net.nodes:
        key = crypto.signing_key_from_seed(certificates.NodePaths.under(
            net.certs / nid, nid).signing_key.read_bytes())
        keys[key.key_id] = sealing.SignerKey(node_principal(nid), key.public)
    return keys.get


def _steps(net: Network, sender: OfficerAgent, raws: list[bytes]) -> list[tuple[str, str]]:
    """(step, recipient) of each evidence envelope, verified under its node's key and
    opened as the sender."""
    lookup = _node_keys(net)
    out = []
    for raw in raws:
        env = sealing.verify(raw, lookup, now=None)
        statement = claimed_statement(
            sealing.open_envelope(env, sender.id, [sender.keystore.encryption]))
        out.append((statement.step.value, ",".join(statement.recipients)))
    return sorted(out)


def _restart(net: Network, *nodes: str) -> None:
    for nid in nodes:
        net.kill(nid, signal.SIGKILL)
    net.write_configs(sections=FREE)
    for nid in nodes:
        net.start(nid)


async def test_evidence_owed_at_accept_survives_a_crash_before_the_drain(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections=HELD)
    jan = enrol(net, "nl/jdevries")
    piet = enrol(net, "nl/pbakker")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id, piet.id)
        env: Envelope = jan.seal(directory, [marie.id, piet.id], b"suspect seen in Liege")
        assert (await nl.submit(env.to_bytes())).status == "accepted"
    # Both decisions are committed (BE's inbox holds it), nothing owed was issued yet.
    wait_for(lambda: _query(net.database("be"), "SELECT 1 FROM inbox WHERE envelope_id = ?",
                            (env.id,)), timeout=30, what="the envelope in BE's inbox")
    assert (_owed(net, "nl"), _owed(net, "be")) == (2, 1)  # accepted + relayed(piet); relayed
    assert _issued(net, "nl", "evidence", env.id) == []

    _restart(net, "nl", "be")

    wait_for(lambda: len(_issued(net, "nl", "evidence", env.id)) >= 3
             and _owed(net, "nl") == 0 and _owed(net, "be") == 0,
             timeout=60, what="the evidence owed before the crash, issued")
    assert _steps(net, jan, _issued(net, "nl", "evidence", env.id)) == [
        ("accepted", f"{marie.id},{piet.id}"), ("relayed", marie.id), ("relayed", piet.id)]
    assert _query(net.database("nl"), "SELECT COUNT(*) FROM audit_named WHERE event = "
                  "'evidence.issued'")[0][0] == 2
    assert _query(net.database("be"), "SELECT COUNT(*) FROM audit_named WHERE event = "
                  "'evidence.issued'")[0][0] == 1


async def test_a_non_delivery_notice_owed_at_expiry_survives_a_crash(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections=HELD)
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id)
        net.kill("be", signal.SIGKILL)  # and it stays down
        env = jan.seal(directory, [marie.id], b"meet at Maastricht station", ttl_ms=1500)
        assert (await nl.submit(env.to_bytes())).status == "accepted"
    wait_for(lambda: _query(net.database("nl"), "SELECT state FROM hops WHERE envelope_id = ?",
                            (env.id,)) == [("expired",)], timeout=60, what="the hop expired")
    assert _owed(net, "nl") == 2  # its "accepted" evidence and its non-delivery notice
    assert _issued(net, "nl", "notice", env.id) == []

    _restart(net, "nl")

    wait_for(lambda: _issued(net, "nl", "notice", env.id) and _owed(net, "nl") == 0,
             timeout=60, what="the non-delivery notice owed before the crash, issued")
    assert len(_issued(net, "nl", "notice", env.id)) == 1
    assert len(_issued(net, "nl", "evidence", env.id)) == 1
