"""The hostile peer (issue 9): a client holding NL's real TLS certificate and NL's real node
signing key misbehaves against BE, while LU, an honest peer, keeps relaying real envelopes.

It re-signs altered envelopes with the node key, claims other origins, replays, sends
oversized and deeply nested batches, opens slow connections and floods. Each is refused with
its own code and audited; BE's per-peer `[federation]` limits hold; LU's deliveries keep
arriving. The flood test measures LU -> BE latency (submit to BE's inbox row) before and
during the flood and prints it; it asserts only properties, never a time.

tests/integration/test_hostile_input.py already proves malformed requests, relays in
another node's name by LU, and an exact transaction replay; this file extends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import ssl
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from liaison_net.client.directory import Directory
from liaison_net.core import codec, crypto
from liaison_net.core.envelope import (
    Envelope,
    decode_header,
    encode_frame,
    read_frame,
    signed_message,
)
from liaison_net.federation import protocol
from liaison_net.pki.certificates import SIGNING_KEY_FILE, node_hostname
from tests.integration.network import (
    Network,
    audit_rows,
    drained_row_counts,
    healthz,
    last_audit_seq,
    peer_tls,
    pending_effects,
    wait_for,
)
from tests.integration.officers import OfficerAgent, enrol, now_ms
from tests.integration.test_first_alert import directory_with
from tests.waits import PATIENCE_S

TARGET = "be"
MSGPACK = "application/x-msgpack"
RATE, BURST = 40, 80  # envelopes/s and burst per peer
IN_FLIGHT, CONNECTIONS = 3, 5
HANDSHAKE_S = HEADER_S = BODY_S = 2.0
AUDIT_WINDOW_S = 2.0
FEDERATION = {"envelopes_per_s": RATE, "burst": BURST, "in_flight_per_peer": IN_FLIGHT,
              "connections_per_peer": CONNECTIONS, "handshake_timeout_s": HANDSHAKE_S,
              "header_timeout_s": HEADER_S, "body_timeout_s": BODY_S,
              "audit_window_s": AUDIT_WINDOW_S}
DELIVERY = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0, "expiry_sweep_s": 0.5,
            "directory_push_s": 0.3, "request_timeout_s": 5.0}
#: Where the flood test leaves its figures (JSON), for docs/reliability.md, if set.
FIGURES = os.environ.get("LIAISON_HOSTILE_FIGURES", "")


@dataclass
class Hostile:
    net: Network
    jan: OfficerAgent  # nl/jdevries: the hostile node's own officer
    marie: OfficerAgent  # be/mpeeters
    lena: OfficerAgent  # lu/lweber: the honest peer's officer
    nl_directory: Directory  # to seal as jan for marie
    lu_directory: Directory  # to seal as lena for marie
    node_key: crypto.SigningKeyPair  # NL's real node signing key


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile-peer")
    net = Network.create(root, node_ids=("nl", "be", "lu"), delivery=DELIVERY,
                         sections={"federation": FEDERATION})
    try:
        jan = enrol(net, "nl/jdevries")
        marie = enrol(net, "be/mpeeters")
        lena = enrol(net, "lu/lweber")
        for nid in net.nodes:
            net.start(nid)

        async def ready() -> tuple[Directory, Directory]:
            async with jan.session() as nl, lena.session() as lu, marie.session() as be:
                nl_dir = await directory_with(nl, marie.id)
                lu_dir = await directory_with(lu, marie.id)
                await directory_with(be, jan.id, lena.id)  # BE verifies their signatures
            return nl_dir, lu_dir

        nl_dir, lu_dir = asyncio.run(ready())
        key = crypto.signing_key_from_seed((net.certs / "nl" / SIGNING_KEY_FILE).read_bytes())
        yield Hostile(net, jan, marie, lena, nl_dir, lu_dir, key)
    finally:
        net.stop_all()


# --- speaking to BE as NL --------------------------------------------------------------------


def _port(h: Hostile) -> int:
    return h.net.nodes[TARGET].federation_port


def txn(origin: str, *envelopes: bytes) -> bytes:
    return codec.pack({"origin": origin, "txn": crypto.random_bytes(16),
                       "envelopes": list(envelopes)})


async def post(h: Hostile, body: bytes, *, as_node: str = "nl",
               session: aiohttp.ClientSession | None = None) -> tuple[int, Any]:
    """POST a transaction body to BE's federation port; (status, decoded answer)."""
    async def once(s: aiohttp.ClientSession) -> tuple[int, Any]:
        async with s.post(f"https://127.0.0.1:{_port(h)}{protocol.TRANSACTION_PATH}",
                          data=body, headers={"Content-Type": MSGPACK},
                          server_hostname=node_hostname(TARGET),
                          timeout=aiohttp.ClientTimeout(total=30)) as resp:
            raw = await resp.read()
            answer = (codec.unpack(raw, what="answer", max_bytes=1 << 24)
                      if resp.content_type == MSGPACK else json.loads(raw))
            return resp.status, answer

    if session is not None:
        return await once(session)
    connector = aiohttp.TCPConnector(ssl=peer_tls(h.net, as_node), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s:
        return await once(s)


async def post_until_admitted(h: Hostile, body: bytes) -> tuple[int, Any]:
    """Post, waiting out a 429 of an earlier test's flood (bounded)."""
    async with asyncio.timeout(PATIENCE_S):
        while True:
            status, answer = await post(h, body)
            if status != 429:
                return status, answer
            await asyncio.sleep(0.2)


def inbox_relayed(h: Hostile, envelope_ids: list[bytes]) -> dict[bytes, int]:
    """BE's inbox rows for these envelopes: id -> when it was stored (ms)."""
    with contextlib.closing(sqlite3.connect(h.net.database(TARGET), timeout=10)) as db:
        rows = db.execute(
            f"SELECT envelope_id, relayed FROM inbox WHERE envelope_id IN "
            f"({','.join('?' * len(envelope_ids))})", envelope_ids).fetchall()
    return {bytes(r[0]): int(r[1]) for r in rows}


def assert_serving(h: Hostile, what: str) -> None:
    proc = h.net.nodes[TARGET].proc
    assert proc is not None and proc.poll() is None, f"{what}: {TARGET} died"
    assert healthz(h.net, TARGET)["status"] == "ok", what


def limited_rows(h: Hostile, after: int, limit: str | None = None) -> list[Any]:
    return [r for r in audit_rows(h.net, TARGET, after=after)
            if r.event == "peer.limited" and (limit is None or r.detail["limit"] == limit)]


def garbage_tally(net: Network, nid: str, *, after: int, actor: str = "nl",
                  at_least: int = 1) -> tuple[list[Any], dict[str, int]]:
    """The `peer.envelopes_refused` entries of ``nid`` after ``after`` (waiting, bounded, for
    their counts to reach ``at_least``: one window may pass before the last is written), and
    their codes summed."""
    def rows() -> list[Any]:
        return [r for r in audit_rows(net, nid, after=after)
                if r.event == "peer.envelopes_refused" and r.actor == actor]

    wait_for(lambda: sum(r.detail["refused"] for r in rows()) >= at_least, timeout=30,
             what=f"{at_least} unverifiable envelope(s) to be audited")
    codes: dict[str, int] = {}
    for r in rows():
        assert sum(r.detail["codes"].values()) == r.detail["refused"], r
        for code, n in r.detail["codes"].items():
            codes[code] = codes.get(code, 0) + n
    return rows(), codes


# --- re-signing altered envelopes with the node key ------------------------------------------


def resign(env: Envelope, key: crypto.SigningKeyPair, *, header: dict[str, Any] | None = None,
           body: dict[str, Any] | None = None, frame_key_id: bytes | None = None) -> bytes:
    """``env`` with its header and/or body replaced, signed by ``key`` (NL's node key). The
    frame names ``frame_key_id`` as signer (default: the node key's own id)."""
    wire = env.header.to_wire()
    header_bytes = codec.pack({**wire, **header}) if header else env.header_bytes
    body_bytes = codec.pack({**env.body.to_wire(), **body}) if body else env.body_bytes
    signature = crypto.sign(key, signed_message(header_bytes, body_bytes))
    return encode_frame(header_bytes, body_bytes, frame_key_id or key.key_id, signature)


async def test_envelopes_altered_and_resigned_with_the_node_key_are_refused_each_with_its_code(
        hostile: Hostile) -> None:
    """NL alters an envelope of its own officer and re-signs it with its node key: a changed
    tag (header still naming the officer's key) is `malformed`; changed recipients with the
    header naming the node key is `forbidden` (the key is not the sender's); a changed
    ciphertext signed by the node key but claiming the officer's key is `bad_signature`; an
    envelope in the name of LU's officer, signed by NL's node key, is `forbidden`. Each has
    none verifies under the key it names, so they are audited as NL's tally
    (`peer.envelopes_refused`, one entry per window, with each code counted). Nothing is
    stored. Control: the unaltered envelope is accepted."""
    h = hostile
    env = h.jan.seal(h.nl_directory, [h.marie.id], b"the original")
    tag = {**env.header.tag.to_wire(), "tlp": "CLEAR", "share_with": ["be", "de-nw", "lu", "nl"]}
    ghost_recipient = [[h.marie.id, env.header.recipients[0].key_id],
                       ["be/ghost", env.header.recipients[0].key_id]]
    ciphertext = bytes(b ^ 0x01 for b in env.body.ciphertext)
    lena_env = h.lena.seal(h.lu_directory, [h.marie.id], b"lena's words")
    cases = {
        "tag relaxed": (resign(env, h.node_key, header={"tag": tag}), "malformed"),
        "recipient added": (resign(env, h.node_key, header={
            "recipients": ghost_recipient, "sender_key": h.node_key.key_id},
            body={"wraps": [*env.body.wraps, env.body.wraps[0]]}), "forbidden"),
        "ciphertext changed": (resign(env, h.node_key, body={"ciphertext": ciphertext},
                                      frame_key_id=env.header.sender_key), "bad_signature"),
        "LU officer's envelope": (resign(lena_env, h.node_key,
                                         header={"sender_key": h.node_key.key_id}),
                                  "forbidden"),
    }
    before = drained_row_counts(h.net, TARGET)
    seq = last_audit_seq(h.net, TARGET)
    status, answer = await post_until_admitted(h, txn("nl", *(raw for raw, _ in
                                                             cases.values())))
    assert status == 200, answer
    got = [tuple(r[:2]) for r in answer["results"]]
    assert got == [(protocol.REFUSED, code) for _, code in cases.values()], got
    _, codes = garbage_tally(h.net, TARGET, after=seq, at_least=len(cases))
    assert codes == {"bad_signature": 1, "forbidden": 2, "malformed": 1}, codes
    assert inbox_relayed(h, [env.id, lena_env.id]) == {}
    assert drained_row_counts(h.net, TARGET) == before
    # Control: the refusals were about the alterations, not the envelope.
    status, answer = await post_until_admitted(h, txn("nl", env.to_bytes()))
    assert status == 200 and answer["results"] == [[protocol.ACCEPTED, "", ""]], answer
    assert list(inbox_relayed(h, [env.id])) == [env.id]


async def test_claims_of_other_origins_are_refused(hostile: Hostile) -> None:
    """With NL's certificate: a transaction whose body says origin "lu" is refused whole
    (403 `forbidden`); LU's officer's genuine envelope relayed by NL is refused per envelope
    (`forbidden`, audited). Nothing is stored."""
    h = hostile
    lena_env = h.lena.seal(h.lu_directory, [h.marie.id], b"not NL's to relay")
    seq = last_audit_seq(h.net, TARGET)
    status, answer = await post_until_admitted(h, txn("lu", lena_env.to_bytes()))
    assert (status, answer["error"]) == (403, "forbidden"), answer
    claims = [r for r in audit_rows(h.net, TARGET, after=seq) if r.event == "peer.refused"]
    assert [(r.actor, r.detail["code"]) for r in claims] == [("nl", "forbidden")], claims
    assert "claims to speak for lu" in claims[0].detail["reason"]
    status, answer = await post_until_admitted(h, txn("nl", lena_env.to_bytes()))
    assert status == 200 and [tuple(r[:2]) for r in answer["results"]] == \
        [(protocol.REFUSED, "forbidden")], answer
    refusals = [r for r in audit_rows(h.net, TARGET, after=seq)
                if r.event == "envelope.refused" and r.envelope_id == lena_env.id]
    assert [r.detail["code"] for r in refusals] == ["forbidden"]
    assert inbox_relayed(h, [lena_env.id]) == {}


async def test_replay_of_an_old_real_transaction_changes_nothing(hostile: Hostile) -> None:
    """Jan's envelope travels for real (NL relays it to BE). NL then replays it, in a new
    transaction and alongside itself: `duplicate` each time, no new row anywhere, no second
    delivery audit entry."""
    h = hostile
    env = h.jan.seal(h.nl_directory, [h.marie.id], b"old news")
    async with h.jan.session() as nl:
        await nl.submit(env.to_bytes())
    wait_for(lambda: inbox_relayed(h, [env.id]), timeout=30, what="the real relay")
    before = drained_row_counts(h.net, TARGET)
    seq = last_audit_seq(h.net, TARGET)
    status, answer = await post_until_admitted(h, txn("nl", env.to_bytes(), env.to_bytes()))
    assert status == 200 and answer["results"] == [[protocol.DUPLICATE, "", ""]] * 2, answer
    assert drained_row_counts(h.net, TARGET) == before
    assert not [r for r in audit_rows(h.net, TARGET, after=seq)
                if r.envelope_id == env.id and r.event == "envelope.delivered_to_inbox"]


async def test_a_transaction_reusing_ids_is_answered_item_by_item(hostile: Hostile) -> None:
    """NL's transaction (written table by table at BE, store/envelope_store.py) carries an
    envelope twice, an envelope BE already holds, and twice an envelope of Jan's with the
    same id and other bytes (a header field changed, signed again with Jan's own key: it
    verifies). Each is answered as it would be alone: accepted once, then duplicate; the
    other bytes `conflict`, then and later; nothing stored or audited twice (review16b)."""
    h = hostile
    held = h.jan.seal(h.nl_directory, [h.marie.id], b"already at BE")
    async with h.jan.session() as nl:
        await nl.submit(held.to_bytes())
    wait_for(lambda: inbox_relayed(h, [held.id]), timeout=30, what="the real relay")
    a, b = (h.jan.seal(h.nl_directory, [h.marie.id], text) for text in (b"a", b"b"))
    other = resign(a, h.jan.keystore.signing, header={"expires": a.header.expires - 1000},
                   frame_key_id=a.header.sender_key)
    assert decode_header(read_frame(other).header_bytes).id == a.id and other != a.to_bytes()
    seq = last_audit_seq(h.net, TARGET)
    status, answer = await post_until_admitted(h, txn(
        "nl", a.to_bytes(), a.to_bytes(), other, b.to_bytes(), held.to_bytes(), other,
        b.to_bytes()))
    assert status == 200, answer
    assert [tuple(r[:2]) for r in answer["results"]] == [
        (protocol.ACCEPTED, ""), (protocol.DUPLICATE, ""), (protocol.REFUSED, "conflict"),
        (protocol.ACCEPTED, ""), (protocol.DUPLICATE, ""), (protocol.REFUSED, "conflict"),
        (protocol.DUPLICATE, "")], answer
    status, answer = await post_until_admitted(h, txn("nl", other))
    assert [tuple(r[:2]) for r in answer["results"]] == [(protocol.REFUSED, "conflict")]
    assert set(inbox_relayed(h, [a.id, b.id])) == {a.id, b.id}
    delivered = [r.envelope_id for r in audit_rows(h.net, TARGET, after=seq)
                 if r.event == "envelope.delivered_to_inbox"]
    assert sorted(delivered) == sorted([a.id, b.id])
    with contextlib.closing(sqlite3.connect(h.net.database(TARGET), timeout=10)) as db:
        (raw,) = db.execute("SELECT raw FROM envelopes WHERE id = ?", (a.id,)).fetchone()
    assert bytes(raw) == a.to_bytes()
    # The evidence BE owes NL for them relayed (audited) here, not in the next test.
    wait_for(lambda: pending_effects(h.net, TARGET) == 0 and not queued_at(h, TARGET),
             timeout=30, what="BE's evidence for NL to leave")


def queued_at(h: Hostile, nid: str) -> int:
    with contextlib.closing(sqlite3.connect(h.net.database(nid), timeout=10)) as db:
        return int(db.execute("SELECT COUNT(*) FROM hops WHERE state = 'queued'").fetchone()[0])


async def test_oversized_and_deeply_nested_batches_are_refused(hostile: Hostile) -> None:
    """A batch of 1025 real envelopes (one over the count limit) is `limit_exceeded` (413)
    before any of them is verified; a batch nested 100,000 deep is `malformed` (400). Neither
    stores or audits an envelope; each is audited as `peer.refused`, once per window."""
    h = hostile
    env = h.jan.seal(h.nl_directory, [h.marie.id], b"many times")
    seq = last_audit_seq(h.net, TARGET)
    before = drained_row_counts(h.net, TARGET)
    status, answer = await post_until_admitted(
        h, txn("nl", *[env.to_bytes()] * (protocol.MAX_TRANSACTION_ENVELOPES + 1)))
    assert (status, answer["error"]) == (413, "limit_exceeded"), answer
    nested = b"\x83\xa9envelopes" + b"\x91" * 100_000 + b"\xc0" + \
        b"\xa6origin\xa2nl\xa3txn\xc4\x10" + b"\x01" * 16
    status, answer = await post_until_admitted(h, nested)
    assert (status, answer["error"]) == (400, "malformed"), answer
    assert drained_row_counts(h.net, TARGET) == before
    assert inbox_relayed(h, [env.id]) == {}
    assert not [r for r in audit_rows(h.net, TARGET, after=seq) if r.event.startswith("envelope")]
    # Each kind of refusal is audited once per window, however often the peer repeats it.
    for _ in range(5):
        status, answer = await post_until_admitted(h, nested)
        assert (status, answer["error"]) == (400, "malformed"), answer
    refused = [r for r in audit_rows(h.net, TARGET, after=seq) if r.event == "peer.refused"]
    codes = [r.detail["code"] for r in refused]
    assert codes.count("limit_exceeded") == 1 and 1 <= codes.count("malformed") <= 3, refused
    assert all(r.actor == "nl" for r in refused)


# --- slow connections ------------------------------------------------------------------------


class Dribbler:
    """One TLS connection as NL sending ``head`` and then a byte every ``every`` seconds,
    never finishing; records when (and how) the node ended it."""

    def __init__(self, h: Hostile, head: bytes, drip: bytes, every: float = 0.2) -> None:
        self.h, self.head, self.drip, self.every = h, head, drip, every
        self.opened = 0.0
        self.connected = False  # the TLS handshake completed
        self.closed_after: float | None = None
        self.answer = b""
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.opened = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", _port(self.h), ssl=peer_tls(self.h.net, "nl"),
                server_hostname=node_hostname(TARGET))
        except (OSError, ssl.SSLError):
            self.closed_after = time.monotonic() - self.opened
            return
        self.connected = True
        try:
            writer.write(self.head)
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.every):
                        chunk = await reader.read(65536)
                        if not chunk:
                            break
                        self.answer += chunk
                        continue
                writer.write(self.drip)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.closed_after = time.monotonic() - self.opened
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    def start(self) -> Dribbler:
        self.task = asyncio.create_task(self.run())
        return self

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def _held(h: Hostile, make: Callable[[], Dribbler], count: int,
                probe: Callable[[], bool], what: str) -> list[Dribbler]:
    """``count`` dribblers (``make``) all held open by the node while ``probe`` (a blocking
    call, run in a thread) comes out true; the dribblers are returned still running.

    The node cuts a dribbler after a short limit on purpose, so on a loaded machine the
    probe may not get its turn while all of them are held; that round is stopped and a new
    one opened. Only ``PATIENCE_S`` bounds the rounds."""
    async with asyncio.timeout(PATIENCE_S):
        while True:
            dribblers = [make().start() for _ in range(count)]
            try:
                while not all(d.connected for d in dribblers) and \
                        all(d.closed_after is None for d in dribblers):
                    await asyncio.sleep(0.02)
                while all(d.closed_after is None for d in dribblers):
                    if await asyncio.to_thread(probe) and \
                            all(d.closed_after is None for d in dribblers):
                        return dribblers
                    await asyncio.sleep(0.05)
            except BaseException:
                for d in dribblers:
                    await d.stop()
                raise
            for d in dribblers:  # one was cut before the probe got through: again
                await d.stop()
            print(f"one of {count} dribblers was cut before {what}; another round")


def _head(body_length: int | None = None) -> bytes:
    head = (f"POST {protocol.TRANSACTION_PATH} HTTP/1.1\r\nHost: be\r\n"
            f"Content-Type: {MSGPACK}\r\n")
    if body_length is None:
        return head.encode()[:-2]  # the head, never finished: a header dribbled forever
    return (head + f"Content-Length: {body_length}\r\n\r\n").encode()


def _complete_request() -> bytes:
    body = txn("nl")
    return _head(len(body)) + body


def _one_request_as_nl(h: Hostile) -> bytes:
    """A complete, valid (empty) transaction on a new connection; what came back (b"" for
    a connection closed without an answer)."""
    ctx = peer_tls(h.net, "nl")
    try:
        with socket.create_connection(("127.0.0.1", _port(h)), timeout=10) as sock, \
                ctx.wrap_socket(sock, server_hostname=node_hostname(TARGET)) as tls:
            tls.sendall(_complete_request().replace(b"Host: be\r\n",
                                                    b"Host: be\r\nConnection: close\r\n"))
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data
    except (OSError, ssl.SSLError):
        return b""


async def _lu_delivers(h: Hostile, text: bytes, timeout: float = 30) -> None:
    env = h.lena.seal(h.lu_directory, [h.marie.id], text)
    async with h.lena.session() as lu:
        await lu.submit(env.to_bytes())
    async with asyncio.timeout(timeout):
        while not inbox_relayed(h, [env.id]):
            await asyncio.sleep(0.05)


async def test_slow_headers_are_cut_and_connections_per_peer_are_bounded(
        hostile: Hostile) -> None:
    """NL opens as many connections as it may and dribbles a request head on each. While
    they are held, one more connection of NL gets no answer at all (closed after its
    handshake); each dribbler is closed by the node, without an answer, within the header
    timeout (polled, bounded); then NL can connect again. LU's delivery flows meanwhile. A
    TCP connection that never starts TLS is dropped after the handshake timeout."""
    h = hostile
    seq = last_audit_seq(h.net, TARGET)
    # Refused while the slots are taken (polled: the handshakes complete in any order).
    dribblers = await _held(h, lambda: Dribbler(h, _head(), b"X"), CONNECTIONS,
                            lambda: _one_request_as_nl(h) == b"",
                            "a connection over the limit was refused")
    try:
        await _lu_delivers(h, b"through the slow-loris")
        async with asyncio.timeout(PATIENCE_S):  # the node cuts each within HEADER_S
            await asyncio.gather(*(d.task for d in dribblers if d.task is not None))
        assert all(d.closed_after is not None for d in dribblers)
        assert all(d.answer == b"" for d in dribblers), [d.answer[:80] for d in dribblers]
    finally:
        for d in dribblers:
            await d.stop()
    answer = await asyncio.to_thread(
        wait_for, lambda: _one_request_as_nl(h) or None, timeout=PATIENCE_S,
        what="NL to get in again")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    refused = limited_rows(h, seq, "connections")
    assert refused and all(r.actor == "nl" for r in refused), refused

    # A TCP connection that never sends a ClientHello: dropped after the handshake timeout.
    def silent_connection_closed() -> bool:
        with socket.create_connection(("127.0.0.1", _port(h)), timeout=HANDSHAKE_S + 5) as s:
            return s.recv(1) == b""

    assert await asyncio.to_thread(silent_connection_closed)
    assert_serving(h, "slow headers")


async def test_slow_bodies_get_408_and_requests_in_flight_per_peer_are_bounded(
        hostile: Hostile) -> None:
    """NL sends complete heads and dribbles the bodies on as many requests as may be in
    flight: one more request of NL is `429 rate_limited` (in flight); each slow body is
    answered `408 request_timeout` and its connection closed (bounded); both are audited
    as `peer.limited`; nothing is stored."""
    h = hostile
    seq = last_audit_seq(h.net, TARGET)
    before = drained_row_counts(h.net, TARGET)

    def over_in_flight() -> bool:
        answer = _one_request_as_nl(h)
        return answer.startswith(b"HTTP/1.1 429") and b"in flight" in answer

    dribblers = await _held(h, lambda: Dribbler(h, _head(1_000_000) + b"\x83", b"\x00"),
                            IN_FLIGHT, over_in_flight,
                            "a request over the in-flight limit got 429")
    try:
        async with asyncio.timeout(PATIENCE_S):  # the node cuts each within BODY_S + LINGER_S
            await asyncio.gather(*(d.task for d in dribblers if d.task is not None))
    finally:
        for d in dribblers:
            await d.stop()
    for d in dribblers:
        head, _, body = d.answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), d.answer[:200]
        assert json.loads(body)["error"] == "request_timeout"
    assert drained_row_counts(h.net, TARGET) == before
    limits = {r.detail["limit"] for r in limited_rows(h, seq)}
    assert {"in_flight", "body_timeout"} <= limits, limits
    await _lu_delivers(h, b"after the slow bodies")
    assert_serving(h, "slow bodies")


# --- flood -----------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _honest_round(h: Hostile, count: int, every: float) -> list[float]:
    """Lena sends ``count`` envelopes to Marie, one per ``every`` s; each one's latency (ms)
    from just before submit to its row in BE's inbox."""
    envelopes = [h.lena.seal(h.lu_directory, [h.marie.id], f"honest {i}".encode())
                 for i in range(count)]
    submitted: dict[bytes, int] = {}
    async with h.lena.session() as lu:
        for env in envelopes:
            submitted[env.id] = now_ms()
            await lu.submit(env.to_bytes())
            await asyncio.sleep(every)
    ids = list(submitted)
    async with asyncio.timeout(60):  # every honest envelope arrives
        while len(arrived := inbox_relayed(h, ids)) < len(ids):
            await asyncio.sleep(0.05)
    return [float(arrived[i] - submitted[i]) for i in ids]


async def test_flood_is_rate_limited_and_honest_delivery_keeps_flowing(
        hostile: Hostile) -> None:
    """NL floods BE for a few seconds (several concurrent senders: batches of 8 of Jan's
    envelopes, replays included, and empty transactions) while Lena on LU sends to Marie on
    BE. Every honest envelope arrives; BE stays up; the flood gets 429s; what BE admitted of
    it stays within its bucket (burst + rate x time + one batch); the audit holds a bounded
    number of `peer.limited` rows. LU -> BE latency before and during the flood is printed
    (not asserted)."""
    h = hostile
    count, every = 15, 0.2
    baseline = await _honest_round(h, count, every)

    pool = [h.jan.seal(h.nl_directory, [h.marie.id], f"flood {i}".encode()).to_bytes()
            for i in range(64)]
    batch = 8
    stop = asyncio.Event()
    statuses: dict[int, int] = {}
    admitted = 0
    seq = last_audit_seq(h.net, TARGET)

    async def flooder(k: int) -> None:
        nonlocal admitted
        connector = aiohttp.TCPConnector(ssl=peer_tls(h.net, "nl"), limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            i, size = k, batch if k else 0  # flooder 0 sends empty transactions (cost 1)
            while not stop.is_set():
                body = txn("nl", *(pool[(i + j) % len(pool)] for j in range(size)))
                i += size
                try:
                    status, _ = await post(h, body, session=session)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    status = 0  # the connection was cut: counted, and flood on
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    admitted += max(1, size)

    started = time.monotonic()
    flooders = [asyncio.create_task(flooder(k)) for k in range(4)]
    try:
        during = await _honest_round(h, count, every)
    finally:
        stop.set()
        await asyncio.gather(*flooders)
    elapsed = time.monotonic() - started

    figures = {
        "honest_envelopes": count, "every_s": every,
        "baseline_ms": {"p50": _percentile(baseline, 0.5), "p99": _percentile(baseline, 0.99),
                        "mean": statistics.fmean(baseline)},
        "flood_ms": {"p50": _percentile(during, 0.5), "p99": _percentile(during, 0.99),
                     "mean": statistics.fmean(during)},
        "flood_s": round(elapsed, 2), "flood_statuses": statuses,
        "flood_cost_admitted": admitted,
        "limits": {"envelopes_per_s": RATE, "burst": BURST, "in_flight_per_peer": IN_FLIGHT},
    }
    print("\nhostile flood figures:", json.dumps(figures, indent=1))
    if FIGURES:
        Path(FIGURES).write_text(json.dumps(figures, indent=1))

    assert_serving(h, "after the flood")
    assert statuses.get(429, 0) > 0, statuses
    assert admitted <= BURST + RATE * (elapsed + 1) + batch, (admitted, elapsed)
    assert admitted > 0, statuses  # the limit slows NL down, it does not shut it out
    rows = limited_rows(h, seq)
    assert rows and all(r.actor == "nl" for r in rows), rows
    # One row per limit per window, and the rows account for the refusals they stand for.
    kinds = {r.detail["limit"] for r in rows}
    assert len(rows) <= len(kinds) * (elapsed / AUDIT_WINDOW_S + 2), (len(rows), elapsed)
    assert len(rows) < statuses[429], (len(rows), statuses)

