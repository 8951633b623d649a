"""A peer that answers nonsense (issue 14, item 4): one failure is one failure.

NL, BE and LU run as real node processes; once their directories have federated, BE is
stopped and a fake BE takes its federation port: a real mutual-TLS server holding BE's real
node certificate (made by our PKI code), which answers NL's transactions with odd answers,
starting with ``[["refused", ["x"], ""]]`` (before issue 14 this raised TypeError in NL's
sender and took the whole node down). NL must stay up, keep serving its officers and LU,
back BE off, and audit the malformed answers once for the spell.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from liaison_net.core import codec
from liaison_net.federation import protocol
from liaison_net.federation.tls import server_context
from tests.integration.network import Network, audit_rows, healthz, last_audit_seq, wait_for
from tests.integration.officers import enrol
from tests.integration.test_first_alert import directory_with, inbox_ids

DELIVERY = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "expiry_sweep_s": 0.5,
            "directory_push_s": 0.3, "request_timeout_s": 5.0}

ODD_ANSWERS: list[tuple[str, bytes]] = [
    ("a list as the refusal code", codec.pack({"results": [["refused", ["x"], ""]]})),
    ("the bare list, no map", codec.pack([["refused", ["x"], ""]])),
    ("a map as the status", codec.pack({"results": [[{"a": 1}, "", ""]]})),
    ("an unknown refusal code", codec.pack({"results": [["refused", "because", ""]]})),
    ("a reason that is bytes", codec.pack({"results": [["refused", "forbidden", b"\x00"]]})),
    ("two results for one envelope",
     codec.pack({"results": [["accepted", "", ""], ["accepted", "", ""]]})),
    ("accepted, with a refusal code", codec.pack({"results": [["accepted", "forbidden", ""]]})),
    ("results as a string", codec.pack({"results": "all fine"})),
    ("an extra field", codec.pack({"results": [["accepted", "", ""]], "also": 1})),
    ("not msgpack", b"\xc1\xc1\xc1"),
    ("a float", b"\x81\xa7results\x91\x93\xcb" + b"\x00" * 8 + b"\xa0\xa0"),
]
ACCEPTED = codec.pack({"results": [["accepted", "", ""]]})
MSGPACK = "application/x-msgpack"


@dataclass
class FakePeer:
    """BE's federation door, played by the test with BE's real certificate."""

    answer: bytes = ACCEPTED
    transactions: list[bytes] = field(default_factory=list)  # the answers given, in order

    async def transaction(self, request: web.Request) -> web.Response:
        body = codec.unpack(await request.read(), what="request", max_bytes=1 << 26)
        count = len(body["envelopes"])
        answer = self.answer
        if answer == ACCEPTED:
            answer = codec.pack({"results": [["accepted", "", ""]] * count})
        self.transactions.append(self.answer)
        return web.Response(body=answer, content_type=MSGPACK)

    @staticmethod
    async def directory(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=codec.pack({"stored": 0, "refused": 0}),
                            content_type=MSGPACK)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 26)
        app.router.add_post(protocol.TRANSACTION_PATH, self.transaction)
        app.router.add_post(protocol.DIRECTORY_PATH, self.directory)
        return app


@contextlib.asynccontextmanager
async def fake_peer(net: Network, nid: str) -> AsyncIterator[FakePeer]:
    peer = FakePeer()
    runner = web.AppRunner(peer.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", net.nodes[nid].federation_port,
                       ssl_context=server_context(net.certs / nid, require_client_cert=True))
    await site.start()
    try:
        yield peer
    finally:
        await runner.cleanup()


def backoff_of(net: Network, nid: str, peer: str) -> int:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        row = db.execute("SELECT attempts FROM peers WHERE node = ?", (peer,)).fetchone()
    return int(row[0]) if row else 0


def hop_state(net: Network, nid: str, envelope_id: bytes, peer: str) -> str | None:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        row = db.execute("SELECT state FROM hops WHERE envelope_id = ? AND node = ?",
                         (envelope_id, peer)).fetchone()
    return str(row[0]) if row else None


async def test_odd_answers_fail_one_peer_only_and_are_audited_once(
        make_network: type[Network]) -> None:
    """Eleven kinds of nonsense from BE, each answered to at least one real transaction:
    NL stays up with every loop running (/healthz ok), backs BE off, writes one
    `peer.answer_malformed` entry for the whole spell, keeps delivering to LU and serving
    its officer. When BE answers properly again the envelope is delivered, exactly once."""
    net = make_network.create(node_ids=("nl", "be", "lu"), delivery=DELIVERY)
    jan, marie, lena = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters"), enrol(net, "lu/lweber")
    for nid in net.nodes:
        net.start(nid)
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id, lena.id)
    net.kill("be")
    nl_proc = net.nodes["nl"].proc
    assert nl_proc is not None
    seq = last_audit_seq(net, "nl")
    async with fake_peer(net, "be") as be, jan.session() as nl, lena.session() as lu:
        be.answer = ODD_ANSWERS[0][1]
        env = jan.seal(directory, [marie.id], b"for BE, who answers nonsense")
        assert (await nl.submit(env.to_bytes())).status == "accepted"
        for what, answer in ODD_ANSWERS:
            be.answer = answer
            seen = be.transactions.count(answer)
            await asyncio.to_thread(wait_for, lambda a=answer, n=seen: be.transactions.count(a) > n,
                                    timeout=30, what=f"NL to meet {what}")
            assert nl_proc.poll() is None, f"{what}: NL died"
            health = healthz(net, "nl")
            assert health["status"] == "ok" and health["failed_loops"] == [], (what, health)
            if what == ODD_ANSWERS[0][0]:
                # Everything else NL does goes on: its officer, and LU.
                to_lu = jan.seal(directory, [lena.id], b"for LU, who is fine")
                assert (await nl.submit(to_lu.to_bytes())).status == "accepted"
                assert to_lu.header.id_text in await inbox_ids(lu, 1)
        assert backoff_of(net, "nl", "be") >= len(ODD_ANSWERS)
        assert hop_state(net, "nl", env.id, "be") == "queued"
        malformed = [r for r in audit_rows(net, "nl", after=seq)
                     if r.event == "peer.answer_malformed"]
        assert [r.actor for r in malformed] == ["be"], malformed
        assert not [r for r in audit_rows(net, "nl", after=seq) if r.event.startswith("loop.")]
        # BE answers properly again: delivered, the spell is over.
        be.answer = ACCEPTED
        await asyncio.to_thread(wait_for,
                                lambda: hop_state(net, "nl", env.id, "be") == "delivered",
                                timeout=30, what="the envelope to be delivered to BE")
        await asyncio.to_thread(wait_for, lambda: backoff_of(net, "nl", "be") == 0,
                                timeout=30, what="BE's backoff to clear")
    assert nl_proc.poll() is None
