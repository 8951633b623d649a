"""Weak keys on real nodes (issue 14, item 3): the attack that took a node down is refused.

The attack: an officer card with an all-zero (or other low-order) X25519 key, then a
backdated urgent request from that officer. The request desk seals an escalation notice
for the requester, libsodium refuses the all-zero shared secret, and the untyped error
escaped the desk's loop and the node's TaskGroup: the process exited. Every envelope from
such an officer also got a 500 (the destination seals delivery evidence for its sender).

Now: `liaison admin enrol-officer` refuses the request; a card pushed by a compromised peer
(NL's real certificate and node signing key) is refused and audited; and a weak card already
in a database from before (written straight into BE's store, as an old row would be) costs
its officer the node's notices and evidence, logged and audited, never the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from liaison_net.core import codec, crypto, sealing
from liaison_net.core.almanac import Almanac
from liaison_net.core.envelope import Kind, Urgency
from liaison_net.core.identity import (
    CARD_DOMAIN,
    EnrolmentRequest,
    OfficerCard,
    decode_stored_card,
    sign_enrolment_request,
)
from liaison_net.core.limits import HOUR_MS
from liaison_net.federation import protocol
from liaison_net.pki.certificates import SIGNING_CERT_FILE, SIGNING_KEY_FILE, node_hostname
from liaison_net.store.node_store import NodeStore
from tests.integration.network import (
    Network,
    audit_rows,
    healthz,
    https,
    last_audit_seq,
    peer_tls,
    run_cli,
    wait_for,
)
from tests.integration.officers import OfficerAgent, benelux_tag, enrol, now_ms

TARGET = "be"
MSGPACK = {"Content-Type": "application/x-msgpack"}
#: An order-8 point of Curve25519 (libsodium's blacklist); any low-order key would do.
LOW_ORDER_X25519 = bytes.fromhex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
#: The desk checks often; how early it escalates stays the default (1 hour before due), so
#: only the backdating makes the request due, as in the attack.
REQUESTS = {"requests": {"check_s": 0.2}}


@dataclass
class Weak:
    net: Network
    marie: OfficerAgent  # be/mpeeters: the addressee
    nl_key: crypto.SigningKeyPair  # NL's real node signing key: the compromised peer's
    legacy: crypto.SigningKeyPair  # nl/legacy's signing key; its old card at BE is weak


def card_bytes(node_key: crypto.SigningKeyPair, officer: str, signing_public: bytes,
               encryption_public: bytes) -> bytes:
    """A card signed by a node's real key, carrying whatever keys that node chose."""
    now = now_ms()
    card = OfficerCard(officer, "Weak", "liaison officer", signing_public, encryption_public,
                       1, now, now + 24 * HOUR_MS, Almanac())
    body = codec.pack(card.to_wire())
    return codec.pack([body, crypto.sign(node_key, CARD_DOMAIN + body)])


async def _store_old_row(net: Network, raw: bytes) -> None:
    """What a database from before the checks may hold: BE stored a weak card then."""
    store = NodeStore(net.database(TARGET), TARGET)
    await store.open()
    try:
        assert await store.put_card(decode_stored_card(raw), raw, now=now_ms(), source="nl")
    finally:
        await store.close()


@pytest.fixture(scope="module")
def weak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weak]:
    net = Network.create(tmp_path_factory.mktemp("weak-keys"), node_ids=("nl", "be"),
                         sections=REQUESTS)
    try:
        marie = enrol(net, "be/mpeeters")  # creates BE's database
        nl_key = crypto.signing_key_from_seed((net.certs / "nl" / SIGNING_KEY_FILE).read_bytes())
        legacy = crypto.generate_signing_key()
        asyncio.run(_store_old_row(net, card_bytes(nl_key, "nl/legacy", legacy.public,
                                                   bytes(32))))
        for nid in net.nodes:
            net.start(nid)
        yield Weak(net, marie, nl_key, legacy)
    finally:
        net.stop_all()


def assert_serving(w: Weak, what: str) -> None:
    proc = w.net.nodes[TARGET].proc
    assert proc is not None and proc.poll() is None, f"{what}: {TARGET} exited"
    assert healthz(w.net, TARGET)["status"] == "ok", what


async def post_as_nl(w: Weak, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST to BE's federation port with NL's real certificate: the compromised peer."""
    status, raw = await https(w.net.nodes[TARGET].federation_port, peer_tls(w.net, "nl"),
                              node_hostname(TARGET), "POST", path, data=codec.pack(body),
                              headers=MSGPACK)
    answer = codec.unpack(raw, what="answer", max_bytes=1 << 20) if status == 200 else raw
    return status, answer


def directory_has(w: Weak, officer: str) -> bool:
    with contextlib.closing(sqlite3.connect(w.net.database(TARGET), timeout=10)) as db:
        return db.execute("SELECT 1 FROM directory WHERE officer = ?",
                          (officer,)).fetchone() is not None


def request_from(w: Weak, sender: str, key: crypto.SigningKeyPair, *, created: int) -> bytes:
    """An urgent request (8 hours) to Marie, sealed as ``sender`` at ``created``."""
    recipient = sealing.RecipientKey(w.marie.id, w.marie.keystore.encryption.public)
    return sealing.seal(sender=sender, sender_key=key, recipients=[recipient],
                        tag=benelux_tag("nl"), plaintext=b"Owner of 1-ABC-123?", now=created,
                        expires=now_ms() + HOUR_MS, kind=Kind.REQUEST,
                        urgency=Urgency.URGENT_DIRECT).to_bytes()


def test_admin_refuses_an_enrolment_request_with_an_all_zero_x25519_key(weak: Weak) -> None:
    """The CLI names the problem and the key, exits non-zero, and stores nothing."""
    signing = crypto.generate_signing_key()
    request = EnrolmentRequest("be/zero", "Zero", "liaison officer", signing.public, bytes(32),
                               Almanac())
    path = weak.net.root / "be-zero.request"
    path.write_bytes(sign_enrolment_request(request, signing))
    proc = run_cli("admin", "enrol-officer", str(path), "--config",
                   str(weak.net.nodes[TARGET].config), check=False)
    assert proc.returncode != 0
    assert "weak_key" in proc.stderr, proc.stderr
    assert "enrolment request of be/zero encryption_public" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not directory_has(weak, "be/zero")


async def test_a_low_order_card_pushed_by_a_compromised_peer_is_refused_and_audited(
        weak: Weak) -> None:
    """NL signs, with its real node key, a card whose X25519 key is of order 8 and pushes it
    to BE: refused (`weak_key`, naming the key), audited, not stored, BE keeps serving. An
    envelope then sent in that officer's name is refused `unknown_key`, never a 500."""
    w = weak
    officer = crypto.generate_signing_key()
    raw = card_bytes(w.nl_key, "nl/lowkey", officer.public, LOW_ORDER_X25519)
    cert = (w.net.certs / "nl" / SIGNING_CERT_FILE).read_bytes()
    after = last_audit_seq(w.net, TARGET)
    status, answer = await post_as_nl(w, protocol.DIRECTORY_PATH,
                                      {"origin": "nl", "node_cert": cert, "cards": [raw]})
    assert (status, answer) == (200, {"stored": 0, "refused": 1})
    refused = [r for r in audit_rows(w.net, TARGET, after=after)
               if r.event == "directory.refused"]
    assert len(refused) == 1 and refused[0].actor == "nl"
    assert refused[0].detail["code"] == "weak_key"
    assert "nl/lowkey encryption_public" in refused[0].detail["reason"]
    assert not directory_has(w, "nl/lowkey")
    assert_serving(w, "after the weak card")

    envelope = request_from(w, "nl/lowkey", officer, created=now_ms())
    status, answer = await post_as_nl(w, protocol.TRANSACTION_PATH, {
        "origin": "nl", "txn": crypto.random_bytes(16), "envelopes": [envelope]})
    assert status == 200, answer
    assert answer["results"][0][:2] == [protocol.REFUSED, "unknown_key"]
    assert_serving(w, "after an envelope from the refused officer")


async def test_an_old_weak_card_row_costs_its_officer_notices_not_the_node(
        weak: Weak) -> None:
    """The attack on a database from before the checks: a backdated urgent request from
    nl/legacy, whose stored card has an all-zero X25519 key, is accepted (no 500: the
    evidence for the sender is left out, audited); the desk escalates it at once and leaves
    the requester out of the notice (audited); BE keeps running."""
    w = weak
    after = last_audit_seq(w.net, TARGET)
    backdated = now_ms() - 8 * HOUR_MS + 60_000  # due in a minute: escalates at once
    status, answer = await post_as_nl(w, protocol.TRANSACTION_PATH, {
        "origin": "nl", "txn": crypto.random_bytes(16),
        "envelopes": [request_from(w, "nl/legacy", w.legacy, created=backdated)]})
    assert status == 200, answer
    assert answer["results"][0][0] == protocol.ACCEPTED, answer

    def left_out(event: str, kind: str) -> bool:
        proc = w.net.nodes[TARGET].proc
        assert proc is not None and proc.poll() is None, f"{TARGET} exited"
        return any(r.event == event and r.detail.get("kind") == kind
                   and r.detail.get("recipient") == "nl/legacy"
                   and r.detail.get("code") == "weak_key"
                   for r in audit_rows(w.net, TARGET, after=after))

    await asyncio.to_thread(wait_for, lambda: left_out("notice.refused", "request-escalation"),
                            timeout=30, what="the escalation to leave nl/legacy out")
    assert_serving(w, "after the escalation")
    assert left_out("evidence.refused", "relayed")
