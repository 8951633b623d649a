"""Hostile input: a peer holding a real certificate, an officer with a real token, and
strangers, all sending what the protocol does not allow. Every refusal is a typed 4xx
answer, nothing is stored, the node stays up, and relays in another node's name or replays
change nothing.

The target is always BE, in a network of three real nodes (NL, BE, LU). A "hostile peer" is
this test speaking on BE's federation port with the real certificate of a configured peer,
the same TLS context a node uses (``federation.tls.client_context``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import sqlite3
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest

from liaison_net import errors
from liaison_net.client.directory import Directory
from liaison_net.core import codec, crypto
from liaison_net.core.ids import id_to_text
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.federation import protocol
from liaison_net.pki.certificates import (
    CA_CERT_FILE,
    SIGNING_CERT_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    node_hostname,
)
from tests.integration.network import (
    Network,
    audit_rows,
    drained_row_counts,
    healthz,
    https,
    last_audit_seq,
    officer_tls,
    peer_tls,
    pending_effects,
    raw_https,
    row_counts,
    run_cli,
    wait_for,
)
from tests.integration.officers import OfficerAgent, bearer_token, enrol
from tests.integration.test_first_alert import directory_with
from tests.integration.test_hostile_peer import garbage_tally

TARGET = "be"
#: A batch of 2 keeps the federation body limit (batch x max envelope) small enough to cross.
BATCH_SIZE = 2
DELIVERY = {"backoff_initial_s": 0.2, "backoff_max_s": 2.0, "expiry_sweep_s": 0.5,
            "directory_push_s": 0.3, "batch_size": BATCH_SIZE}
FED_MAX_BODY = min(256 * 1024 * 1024, BATCH_SIZE * DEFAULT_LIMITS.max_envelope_bytes)
API_MAX_ENVELOPE = DEFAULT_LIMITS.max_envelope_bytes
API_MAX_JSON = 4096  # client.api.MAX_JSON_BODY

MSGPACK = "application/x-msgpack"
ENVELOPE = "application/x-liaison-envelope"
JSON = "application/json"
KNOWN_CODES = {cls.code for cls in errors.all_error_classes()}
REFUSAL_EVENTS = {"envelope.refused", "directory.refused", "peer.refused", "login.failed",
                  "peer.envelopes_refused"}
AUDIT_WINDOW_S = 1.0  # [federation]: refusals of one peer are audited once per window


@dataclass
class Hostile:
    net: Network
    jan: OfficerAgent  # nl/jdevries
    marie: OfficerAgent  # be/mpeeters, logged in on BE with ``token``
    token: str
    directory: Directory  # NL's directory, to seal from jan to marie
    foreign: Path  # certs of a second network: its own CA and a node called "nl"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    net = Network.create(root, node_ids=("nl", "be", "lu"), delivery=DELIVERY,
                         sections={"federation": {"audit_window_s": AUDIT_WINDOW_S}})
    try:
        foreign = root / "foreign-certs"
        run_cli("admin", "init-network", "--dir", str(foreign), "--name", "rogue CA")
        run_cli("admin", "init-node", "nl", "--dir", str(foreign), "--ca-dir", str(foreign))
        jan = enrol(net, "nl/jdevries")
        marie = enrol(net, "be/mpeeters")
        for nid in net.nodes:
            net.start(nid)

        async def ready() -> tuple[Directory, str]:
            async with jan.session() as nl, marie.session() as be:
                directory = await directory_with(nl, marie.id)
                await directory_with(be, jan.id)  # BE can verify jan's signature
            return directory, await bearer_token(marie)

        directory, token = asyncio.run(ready())
        yield Hostile(net, jan, marie, token, directory, foreign)
    finally:
        net.stop_all()


# --- speaking to BE -------------------------------------------------------------------------


def _ssl_for(h: Hostile, face: str, as_node: str) -> ssl.SSLContext:
    return peer_tls(h.net, as_node) if face == "fed" else officer_tls(h.net)


def _port(h: Hostile, face: str) -> int:
    node = h.net.nodes[TARGET]
    return node.federation_port if face == "fed" else node.client_port


async def _chunks(total: int) -> AsyncIterator[bytes]:
    block = b"\x00" * 65536
    sent = 0
    while sent < total:
        piece = block[:min(len(block), total - sent)]
        sent += len(piece)
        yield piece


async def http(h: Hostile, face: str, method: str, path: str, *, body: bytes | None = None,
               content_type: str | None = None, auth: str | None = None,
               stream_bytes: int = 0, as_node: str = "nl") -> tuple[int, bytes]:
    """One request to BE; (status, body). ``stream_bytes``: send a chunked body that long."""
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if auth is not None:
        headers["Authorization"] = auth
    data: Any = body if not stream_bytes else _chunks(stream_bytes)
    return await https(_port(h, face), _ssl_for(h, face, as_node), node_hostname(TARGET),
                       method, path, data=data, headers=headers)


def raw(h: Hostile, face: str, request: bytes, *, as_node: str = "nl") -> tuple[int, bytes]:
    return raw_https(_port(h, face), _ssl_for(h, face, as_node), node_hostname(TARGET), request)


def fed_body(**fields: Any) -> dict[str, Any]:
    return {"origin": "nl", "txn": b"\x01" * 16, "envelopes": [], **fields}


def txn(origin: str, *envelopes: bytes, txn_id: bytes | None = None) -> bytes:
    return codec.pack({"origin": origin, "txn": txn_id or crypto.random_bytes(16),
                       "envelopes": list(envelopes)})


def error_of(status: int, body: bytes, what: str) -> str:
    """The code of a typed error answer, after checking its shape; fails on anything else."""
    assert 400 <= status < 500, f"{what}: expected a 4xx, got {status}: {body[:300]!r}"
    try:
        answer = json.loads(body)
    except ValueError:
        raise AssertionError(f"{what}: answer is not JSON: {body[:300]!r}") from None
    assert isinstance(answer, dict) and set(answer) == {"error", "detail"}, \
        f"{what}: answer is not {{error, detail}}: {answer!r:.300}"
    code, detail = answer["error"], answer["detail"]
    assert code in KNOWN_CODES or (isinstance(code, str) and code.startswith("policy.")), \
        f"{what}: {code!r} is not a code of errors.py"
    assert isinstance(detail, str) and detail.strip(), f"{what}: empty detail"
    return str(code)


def assert_still_serving(h: Hostile, what: str) -> None:
    proc = h.net.nodes[TARGET].proc
    assert proc is not None and proc.poll() is None, f"{what}: node {TARGET} died"
    assert healthz(h.net, TARGET)["status"] == "ok", f"{what}: /healthz not ok"


def quiet(h: Hostile) -> tuple[dict[str, int], int]:
    """Row counts and audit head of the target once its own background work is done.

    Earlier cases send valid envelopes; the target then relays delivery evidence back to
    their sender by itself. Wait (bounded) until nothing is queued and the audit head holds
    still, so a case's "nothing changed" is about that case only.
    """
    def settled() -> tuple[dict[str, int], int] | None:
        with contextlib.closing(sqlite3.connect(h.net.database(TARGET), timeout=10)) as db:
            queued = db.execute("SELECT COUNT(*) FROM hops WHERE state = 'queued'").fetchone()[0]
        first = last_audit_seq(h.net, TARGET)
        time.sleep(0.05)  # part of the stillness check: two reads apart, bounded by wait_for
        if queued or pending_effects(h.net, TARGET) or last_audit_seq(h.net, TARGET) != first:
            return None
        return row_counts(h.net, TARGET), first

    result: tuple[dict[str, int], int] = wait_for(settled, timeout=30,
                                                  what="the target to settle")
    return result


def assert_nothing_stored(h: Hostile, before: dict[str, int], audit_seq: int,
                          what: str) -> None:
    after = row_counts(h.net, TARGET)
    assert after == before, f"{what}: stored something: {before} -> {after}"
    new = audit_rows(h.net, TARGET, after=audit_seq)
    wrong = [r for r in new if r.event not in REFUSAL_EVENTS]
    assert not wrong, f"{what}: audited more than refusals: {wrong}"


def inbox_rows(h: Hostile, envelope_id: bytes) -> int:
    with contextlib.closing(sqlite3.connect(h.net.database(TARGET), timeout=10)) as db:
        return int(db.execute("SELECT COUNT(*) FROM inbox WHERE envelope_id = ?",
                              (envelope_id,)).fetchone()[0])


# --- 1. TLS: only certificates of our network CA get in -------------------------------------


def _handshake_and_ask(ctx: ssl.SSLContext, port: int) -> bytes:
    """Connect, handshake, send a well-formed transaction, return the first answer bytes."""
    body = txn("nl")
    request = (f"POST {protocol.TRANSACTION_PATH} HTTP/1.1\r\nHost: be\r\n"
               f"Content-Type: {MSGPACK}\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname=node_hostname(TARGET),
                            suppress_ragged_eofs=False) as tls:
        # TLS 1.3: the server judges our certificate after our side has finished, so its
        # refusal (an alert, or a close without one, SSLEOFError) comes on the first read.
        tls.sendall(request)
        return tls.recv(65536)


def _client_ctx(ca: Path, cert_dir: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=ca)  # we do reach the real BE: only OUR cert is wrong
    if cert_dir is not None:
        ctx.load_cert_chain(cert_dir / TLS_CERT_FILE, cert_dir / TLS_KEY_FILE)
    return ctx


def test_certificate_from_another_ca_is_refused_in_the_tls_handshake(hostile: Hostile) -> None:
    """A node certificate issued by another network's CA, even for a configured peer's id
    ("nl"), and no certificate at all, fail the TLS handshake on the federation port; the
    node keeps serving. Control: the real NL certificate gets an HTTP answer."""
    h = hostile
    port = h.net.nodes[TARGET].federation_port
    real = _client_ctx(h.net.ca_cert, h.net.certs / "nl")
    assert _handshake_and_ask(real, port).startswith(b"HTTP/1.1 200")

    foreign = _client_ctx(h.net.ca_cert, h.foreign / "nl")
    assert (h.foreign / "nl" / CA_CERT_FILE).read_bytes() != h.net.ca_cert.read_bytes()
    for what, ctx in (("foreign-CA certificate", foreign),
                      ("no certificate", _client_ctx(h.net.ca_cert, None))):
        with pytest.raises(ssl.SSLError):
            answer = _handshake_and_ask(ctx, port)
            pytest.fail(f"{what}: the node answered instead of refusing: {answer[:200]!r}")
        assert_still_serving(h, what)
    assert _handshake_and_ask(real, port).startswith(b"HTTP/1.1 200")


# --- 2. a peer speaking for another node -----------------------------------------------------


async def test_peer_relaying_an_envelope_in_another_nodes_name_is_refused(
        hostile: Hostile) -> None:
    """LU relays an envelope sealed by an NL officer: refused per envelope with `forbidden`,
    audited by BE, nothing in BE's inbox. A transaction whose body says origin "nl" sent with
    LU's certificate is refused whole (403 `forbidden`). Control: the same envelope relayed
    by NL, its own node, is then accepted."""
    h = hostile
    env = h.jan.seal(h.directory, [h.marie.id], b"relayed by the wrong node")
    before, seq = quiet(h)

    status, answer = await http(h, "fed", "POST", protocol.TRANSACTION_PATH,
                                body=txn("lu", env.to_bytes()), content_type=MSGPACK,
                                as_node="lu")
    assert status == 200, answer[:300]
    results = codec.unpack(answer, what="answer", max_bytes=1 << 20)["results"]
    assert len(results) == 1 and results[0][:2] == [protocol.REFUSED, "forbidden"], results
    assert inbox_rows(h, env.id) == 0
    assert_nothing_stored(h, before, seq, "relay in NL's name")
    refusals = [r for r in audit_rows(h.net, TARGET, after=seq)
                if r.event == "envelope.refused" and r.envelope_id == env.id]
    assert len(refusals) == 1, refusals
    assert refusals[0].actor == "lu"
    assert refusals[0].detail["code"] == "forbidden"
    assert refusals[0].detail["peer"] == "lu"
    assert refusals[0].detail["layer"] == "destination"

    # The body claims NL, the certificate says LU: the whole transaction is refused.
    seq = last_audit_seq(h.net, TARGET)
    status, answer = await http(h, "fed", "POST", protocol.TRANSACTION_PATH,
                                body=txn("nl", env.to_bytes()), content_type=MSGPACK,
                                as_node="lu")
    assert status == 403 and error_of(status, answer, "origin nl from lu") == "forbidden"
    assert inbox_rows(h, env.id) == 0
    assert_nothing_stored(h, before, seq, "origin nl from lu")

    # Control: the refusal was about who relayed it, not the envelope.
    status, answer = await http(h, "fed", "POST", protocol.TRANSACTION_PATH,
                                body=txn("nl", env.to_bytes()), content_type=MSGPACK)
    assert status == 200
    assert codec.unpack(answer, what="answer", max_bytes=1 << 20)["results"] == \
        [[protocol.ACCEPTED, "", ""]]
    assert inbox_rows(h, env.id) == 1


# --- 3. replay ------------------------------------------------------------------------------


async def test_replayed_transaction_is_a_duplicate_and_changes_nothing(hostile: Hostile) -> None:
    """The same transaction (same txn id, same envelope) posted twice by NL: accepted, then
    duplicate; one envelope row, one inbox row, one delivery audit entry."""
    h = hostile
    env = h.jan.seal(h.directory, [h.marie.id], b"say it twice")
    body = txn("nl", env.to_bytes(), txn_id=crypto.random_bytes(16))
    seq = last_audit_seq(h.net, TARGET)
    outcomes, counts = [], []
    for _ in range(2):
        status, answer = await http(h, "fed", "POST", protocol.TRANSACTION_PATH, body=body,
                                    content_type=MSGPACK)
        assert status == 200, answer[:300]
        outcomes.append(codec.unpack(answer, what="answer", max_bytes=1 << 20)["results"])
        counts.append(drained_row_counts(h.net, TARGET))
    assert outcomes == [[[protocol.ACCEPTED, "", ""]], [[protocol.DUPLICATE, "", ""]]]
    assert counts[1] == counts[0], "the replay stored something"
    assert inbox_rows(h, env.id) == 1
    delivered = [r for r in audit_rows(h.net, TARGET, after=seq)
                 if r.event == "envelope.delivered_to_inbox" and r.envelope_id == env.id]
    assert len(delivered) == 1


# --- 4. malformed, oversize, mistyped and unauthenticated requests, on every endpoint -------


@dataclass(frozen=True)
class Case:
    """One hostile request and the typed refusal it must get."""

    id: str
    face: str  # "fed": federation port, as peer NL; "api": officer port
    method: str
    path: str
    status: int
    code: str
    body: bytes | None = None
    content_type: str | None = None
    auth: str | None = None  # the Authorization header; "TOKEN": a valid bearer token
    stream_bytes: int = 0  # send a chunked body of this many bytes instead of ``body``
    raw: bytes | None = None  # send these request bytes as they are
    as_node: str = "nl"


_rng = random.Random(20240611)
RANDOM = _rng.randbytes(333)
NON_UTF8 = b"\xff\xfe\xfd{\"officer\": \"be/x\"}"
ENVELOPE_ID = id_to_text(b"\x01" * 16)  # well-formed, never stored
BAD_IDS = {
    "short": "ABC",
    "long": "0" * 27,
    "bad-char": "U" * 26,
    "over-128-bits": "Z" * 26,
    "non-ascii": urllib.parse.quote("é" * 26),
    "nul": "%00" * 26,
    "space": "%20" * 26,
}


def _non_canonical_map() -> bytes:
    # keys not in sorted order: same value, a second encoding
    packer = msgpack.Packer(use_bin_type=True)
    return b"\x83" + b"".join(packer.pack(k) + packer.pack(v) for k, v in (
        ("txn", b"\x01" * 16), ("origin", "nl"), ("envelopes", [])))


def _wide_int() -> bytes:
    return b"\x81\xa1n\xcf" + (5).to_bytes(8, "big")  # {"n": 5} with a uint64 for 5


def _deep(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def shape_cases(face: str, path: str, valid: dict[str, Any], fields_wrong: dict[str, Any],
                media: str, auth: str | None = None) -> list[Case]:
    """Malformed bodies of every kind for an endpoint that takes ``valid`` (msgpack or JSON)."""
    is_json = media == JSON

    def enc(value: Any) -> bytes:
        return json.dumps(value).encode() if is_json else codec.pack(value)

    whole = enc(valid)
    p = f"{face}{path}"
    cases = [
        Case(f"{p} random bytes", face, "POST", path, 400, "malformed", RANDOM, media, auth),
        Case(f"{p} empty body", face, "POST", path, 400, "malformed", b"", media, auth),
        Case(f"{p} truncated", face, "POST", path, 400, "malformed", whole[:-5], media, auth),
        Case(f"{p} trailing bytes", face, "POST", path, 400, "malformed", whole + b"\x00",
             media, auth),
        Case(f"{p} a list", face, "POST", path, 400, "malformed", enc(list(valid)), media,
             auth),
        Case(f"{p} a number", face, "POST", path, 400, "malformed", enc(7), media, auth),
        Case(f"{p} a string", face, "POST", path, 400, "malformed", enc("origin"), media,
             auth),
        Case(f"{p} null", face, "POST", path, 400, "malformed", enc(None), media, auth),
        Case(f"{p} empty map", face, "POST", path, 400, "malformed", enc({}), media, auth),
        Case(f"{p} extra field", face, "POST", path, 400, "malformed",
             enc({**valid, "zzz": 1}), media, auth),
    ]
    for name in sorted(valid):
        missing = {k: v for k, v in valid.items() if k != name}
        cases.append(Case(f"{p} missing {name}", face, "POST", path, 400, "malformed",
                          enc(missing), media, auth))
    for name, (value, status, code) in fields_wrong.items():
        cases.append(Case(f"{p} wrong {name}", face, "POST", path, status, code,
                          enc({**valid, name.split(":")[0]: value}), media, auth))
    other = MSGPACK if is_json else JSON
    cases += [
        Case(f"{p} {other} content type", face, "POST", path, 415, "unsupported_media_type",
             whole, other, auth),
        Case(f"{p} text/plain content type", face, "POST", path, 415,
             "unsupported_media_type", whole, "text/plain", auth),
        Case(f"{p} no content type", face, "POST", path, 415, "unsupported_media_type",
             whole, None, auth),
        Case(f"{p} GET instead of POST", face, "GET", path, 405, "refused", auth=auth),
    ]
    if is_json:
        cases += [
            Case(f"{p} not UTF-8", face, "POST", path, 400, "malformed", NON_UTF8, media, auth),
            Case(f"{p} nested 2040 deep", face, "POST", path, 400, "malformed",
                 b"[" * 2040 + b"]" * 2040, media, auth),
            Case(f"{p} NaN", face, "POST", path, 400, "malformed",
                 b'{"officer": NaN}', media, auth),
            Case(f"{p} 4000-digit number", face, "POST", path, 400, "malformed",
                 b'{"officer": ' + b"9" * 4000 + b"}", media, auth),
            Case(f"{p} duplicate keys", face, "POST", path, 400, "malformed",
                 b'{"officer": 1, "officer": 2}', media, auth),
        ]
    else:
        cases += [
            Case(f"{p} non-canonical key order", face, "POST", path, 400, "malformed",
                 _non_canonical_map(), media, auth),
            Case(f"{p} non-canonical integer", face, "POST", path, 400, "malformed",
                 _wide_int(), media, auth),
            Case(f"{p} float", face, "POST", path, 400, "malformed",
                 msgpack.packb({**valid, "origin": 1.5}, use_bin_type=True), media, auth),
            Case(f"{p} extension type", face, "POST", path, 400, "malformed",
                 msgpack.packb(msgpack.ExtType(5, b"xx")), media, auth),
            Case(f"{p} timestamp extension", face, "POST", path, 400, "malformed",
                 msgpack.packb(msgpack.Timestamp(1, 0), datetime=False), media, auth),
            Case(f"{p} nested 200 deep", face, "POST", path, 400, "malformed", _deep(200),
                 media, auth),
            Case(f"{p} nested 100000 deep", face, "POST", path, 400, "malformed",
                 _deep(100_000), media, auth),
            Case(f"{p} bytes keys", face, "POST", path, 400, "malformed",
                 msgpack.packb({k.encode(): v for k, v in valid.items()}, use_bin_type=True),
                 media, auth),
            Case(f"{p} array header promising 2^32-1 items", face, "POST", path, 400,
                 "malformed", b"\xdd\xff\xff\xff\xff", media, auth),
        ]
    return cases


def oversize_cases(face: str, path: str, media: str, limit: int,
                   auth: str | None = None) -> list[Case]:
    p = f"{face}{path}"
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {media}\r\n"
            f"Content-Length: {limit + 1}\r\nConnection: close\r\n"
            + (f"Authorization: {auth}\r\n" if auth else "") + "\r\n").encode()
    return [
        Case(f"{p} declared over the limit", face, "POST", path, 413, "limit_exceeded",
             raw=head + b"\x00" * 100),
        Case(f"{p} chunked over the limit", face, "POST", path, 413, "limit_exceeded",
             content_type=media, auth=auth, stream_bytes=limit + 64 * 1024),
    ]


def auth_cases(method: str, path: str) -> list[Case]:
    p = f"api{path}"
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    return [
        Case(f"{p} no token", "api", method, path, 401, "unauthorized"),
        Case(f"{p} unknown token", "api", method, path, 401, "unauthorized",
             auth="Bearer " + "A" * 43),
        Case(f"{p} empty token", "api", method, path, 401, "unauthorized", auth="Bearer "),
        Case(f"{p} basic scheme", "api", method, path, 401, "unauthorized",
             auth="Basic YmU6cGFzcw=="),
        Case(f"{p} token without scheme", "api", method, path, 401, "unauthorized",
             auth="TOKEN-BARE"),
        Case(f"{p} token not UTF-8", "api", method, path, 401, "unauthorized",
             raw=request + b"Authorization: Bearer \xff\xfe\x80abc\r\n\r\n"),
    ]


def id_cases(method: str, template: str) -> list[Case]:
    cases = []
    for name, bad in BAD_IDS.items():
        path = template.format(id=bad)
        cases.append(Case(f"api{template} id {name}", "api", method, path, 400, "malformed",
                          auth="TOKEN"))
    cases.append(Case(f"api{template} unknown id", "api", method,
                      template.format(id=ENVELOPE_ID), 404, "not_found", auth="TOKEN"))
    cases.append(Case(f"api{template} id with a slash", "api", method,
                      template.format(id=ENVELOPE_ID[:10] + "/" + ENVELOPE_ID[10:]), 404,
                      "not_found", auth="TOKEN"))
    return cases


def build_cases() -> list[Case]:
    tx, dr = protocol.TRANSACTION_PATH, protocol.DIRECTORY_PATH
    cases: list[Case] = []
    # federation: transactions
    cases += shape_cases("fed", tx, fed_body(), {
        "origin:int": (7, 400, "malformed"),
        "origin:other node": ("be", 403, "forbidden"),
        "txn:str": ("0123456789abcdef", 400, "malformed"),
        "txn:15 bytes": (b"\x01" * 15, 400, "malformed"),
        "txn:nil": (None, 400, "malformed"),
        "envelopes:map": ({"a": b"x"}, 400, "malformed"),
        "envelopes:bytes": (b"xx", 400, "malformed"),
        "envelopes:ints": ([1, 2], 400, "malformed"),
        "envelopes:nested lists": ([[b"x"]], 400, "malformed"),
        "envelopes:1025 items": ([b""] * (protocol.MAX_TRANSACTION_ENVELOPES + 1), 413,
                                 "limit_exceeded"),
    }, MSGPACK)
    cases += oversize_cases("fed", tx, MSGPACK, FED_MAX_BODY)
    # federation: directory pushes
    dir_valid = {"origin": "nl", "node_cert": b"SIGNING-CERT", "cards": []}
    cases += shape_cases("fed", dr, dir_valid, {
        "origin:int": (7, 403, "forbidden"),
        "node_cert:str": ("-----BEGIN CERTIFICATE-----", 400, "malformed"),
        "node_cert:garbage": (RANDOM, 400, "malformed"),
        "node_cert:truncated PEM": ("PEM-TRUNCATED", 400, "malformed"),
        "node_cert:the CA certificate": ("CA-CERT", 401, "unauthorized"),
        "node_cert:another node's": ("BE-SIGNING-CERT", 403, "forbidden"),
        "node_cert:TLS not signing": ("NL-TLS-CERT", 401, "unauthorized"),
        "node_cert:foreign CA": ("FOREIGN-SIGNING-CERT", 401, "unauthorized"),
        "cards:map": ({"x": b""}, 400, "malformed"),
        "cards:strs": (["card"], 400, "malformed"),
        "cards:501 items": ([b""] * (protocol.MAX_DIRECTORY_CARDS + 1), 413, "limit_exceeded"),
    }, MSGPACK)
    # ``key_changes`` is optional (a node's co-signed key changes, docs/protocol.md §19).
    for name, (value, status, code) in {
            "map": ({"x": b""}, 400, "malformed"),
            "strs": (["change"], 400, "malformed"),
            "17 items": ([b""] * (protocol.MAX_KEY_CHANGES + 1), 413, "limit_exceeded"),
            "garbage": ([RANDOM], 400, "malformed")}.items():
        cases.append(Case(f"fed{dr} wrong key_changes:{name}", "fed", "POST", dr, status, code,
                          codec.pack({**dir_valid, "key_changes": value}), MSGPACK))
    cases += oversize_cases("fed", dr, MSGPACK, FED_MAX_BODY)
    cases.append(Case("fed unknown route", "fed", "POST", "/fed/v1/nothing", 404, "not_found",
                      codec.pack(fed_body()), MSGPACK))
    cases.append(Case("fed officer route on the federation port", "fed", "GET",
                      "/api/v1/inbox", 404, "not_found"))
    # officer API: login
    ch, lg = "/api/v1/login/challenge", "/api/v1/login"
    cases += shape_cases("api", ch, {"officer": "be/mpeeters"}, {
        "officer:int": (5, 400, "malformed"),
        "officer:list": (["be/mpeeters"], 400, "malformed"),
        "officer:not an id": ("Robert'); DROP TABLE inbox;--", 400, "malformed"),
        "officer:too long": ("be/" + "a" * 200, 400, "malformed"),
        "officer:nul": ("be/mpeeters\x00", 400, "malformed"),
    }, JSON)
    cases += oversize_cases("api", ch, JSON, API_MAX_JSON)
    login_valid = {"officer": "be/mpeeters", "challenge": "00" * 32, "signature": "00" * 64}
    cases += shape_cases("api", lg, login_valid, {
        "officer:int": (5, 400, "malformed"),
        "challenge:not hex": ("zz", 400, "malformed"),
        "challenge:list": ([1, 2], 400, "malformed"),
        "challenge:unknown": ("ab" * 32, 401, "unauthorized"),
        "signature:not hex": ("xyz", 400, "malformed"),
        "signature:object": ({"a": 1}, 400, "malformed"),
    }, JSON)
    cases += oversize_cases("api", lg, JSON, API_MAX_JSON)
    # officer API: submit
    ev = "/api/v1/envelopes"
    cases += auth_cases("POST", ev)
    cases += [
        Case(f"api{ev} random bytes", "api", "POST", ev, 400, "malformed", RANDOM, ENVELOPE,
             "TOKEN"),
        Case(f"api{ev} empty", "api", "POST", ev, 400, "malformed", b"", ENVELOPE, "TOKEN"),
        Case(f"api{ev} map", "api", "POST", ev, 400, "malformed", codec.pack({"a": 1}),
             ENVELOPE, "TOKEN"),
        Case(f"api{ev} 5 ints", "api", "POST", ev, 400, "malformed",
             codec.pack([1, 2, 3, 4, 5]), ENVELOPE, "TOKEN"),
        Case(f"api{ev} version 2", "api", "POST", ev, 400, "malformed",
             codec.pack([2, b"h", b"b", b"k" * 16, b"s" * 64]), ENVELOPE, "TOKEN"),
        Case(f"api{ev} short key id", "api", "POST", ev, 400, "malformed",
             codec.pack([1, b"h", b"b", b"k", b"s" * 64]), ENVELOPE, "TOKEN"),
        Case(f"api{ev} header over its limit", "api", "POST", ev, 413, "limit_exceeded",
             codec.pack([1, b"h" * (DEFAULT_LIMITS.max_header_bytes + 1), b"b", b"k" * 16,
                         b"s" * 64]), ENVELOPE, "TOKEN"),
        Case(f"api{ev} unknown signer", "api", "POST", ev, 400, "unknown_key",
             codec.pack([1, b"h", b"b", b"k" * 16, b"s" * 64]), ENVELOPE, "TOKEN"),
        Case(f"api{ev} msgpack content type", "api", "POST", ev, 415,
             "unsupported_media_type", RANDOM, MSGPACK, "TOKEN"),
        Case(f"api{ev} JSON content type", "api", "POST", ev, 415, "unsupported_media_type",
             b"{}", JSON, "TOKEN"),
        Case(f"api{ev} no content type", "api", "POST", ev, 415, "unsupported_media_type",
             RANDOM, None, "TOKEN"),
        Case(f"api{ev} GET", "api", "GET", ev, 405, "refused", auth="TOKEN"),
    ]
    cases += oversize_cases("api", ev, ENVELOPE, API_MAX_ENVELOPE, auth="TOKEN")
    # officer API: inbox
    ib = "/api/v1/inbox"
    cases += auth_cases("GET", ib)
    for query in ("after=-1", "after=x", "after=", "after=1.5", "after=0x10",
                  "after=%C2%B2",  # superscript two: a "digit" to str.isdigit
                  "after=%D9%A1",  # Arabic-Indic one
                  "after=" + "9" * 5000, "after=" + "9" * 30, "limit=0", "limit=501",
                  "limit=-5", "limit=%EF%BC%95",  # fullwidth five
                  "limit=1e2", "limit=+5", "limit=%205"):
        cases.append(Case(f"api{ib} ?{query[:40]}", "api", "GET", f"{ib}?{query}", 400,
                          "malformed", auth="TOKEN"))
    cases.append(Case(f"api{ib} POST", "api", "POST", ib, 405, "refused", auth="TOKEN"))
    # officer API: one envelope, its ack and status
    for method, template in (("GET", "/api/v1/envelopes/{id}"),
                             ("POST", "/api/v1/envelopes/{id}/ack"),
                             ("GET", "/api/v1/envelopes/{id}/status")):
        cases += auth_cases(method, template.format(id=ENVELOPE_ID))
        cases += id_cases(method, template)
    ack = f"/api/v1/envelopes/{ENVELOPE_ID}/ack"
    cases.append(Case(f"api{ack} with a body", "api", "POST", ack, 413, "limit_exceeded",
                      b"{}", JSON, "TOKEN"))
    cases.append(Case(f"api{ack} GET", "api", "GET", ack, 405, "refused", auth="TOKEN"))
    # officer API: directory
    cases += auth_cases("GET", "/api/v1/directory")
    cases.append(Case("api/api/v1/directory POST", "api", "POST", "/api/v1/directory", 405,
                      "refused", b"{}", JSON, "TOKEN"))
    cases.append(Case("api unknown route", "api", "GET", "/api/v2/inbox", 404, "not_found"))
    return cases


CASES = build_cases()


def _resolve(h: Hostile, case: Case) -> tuple[bytes | None, str | None, bytes | None]:
    """Fill in what the table can only name: the bearer token, real certificates."""
    nl_signing = (h.net.certs / "nl" / SIGNING_CERT_FILE).read_bytes()
    pems = {
        "SIGNING-CERT": nl_signing,
        "CA-CERT": h.net.ca_cert.read_bytes(),
        "BE-SIGNING-CERT": (h.net.certs / "be" / SIGNING_CERT_FILE).read_bytes(),
        "NL-TLS-CERT": (h.net.certs / "nl" / TLS_CERT_FILE).read_bytes(),
        "FOREIGN-SIGNING-CERT": (h.foreign / "nl" / SIGNING_CERT_FILE).read_bytes(),
        "PEM-TRUNCATED": nl_signing[:200],
    }
    body = case.body
    if body and case.path == protocol.DIRECTORY_PATH and case.content_type == MSGPACK:
        try:
            value = codec.unpack(body, what="case", max_bytes=1 << 24)
        except errors.LiaisonError:
            value = None  # a hostile encoding: sent as it is
        if isinstance(value, dict) and isinstance(value.get("node_cert"), str | bytes):
            marker = value["node_cert"]
            marker = marker.decode("latin-1") if isinstance(marker, bytes) else marker
            if marker in pems:
                body = codec.pack({**value, "node_cert": pems[marker]})
    auth = {"TOKEN": f"Bearer {h.token}", "TOKEN-BARE": h.token}.get(case.auth or "",
                                                                       case.auth)
    raw_req = case.raw
    if raw_req is not None:
        raw_req = raw_req.replace(b"Authorization: TOKEN\r\n",
                                  f"Authorization: Bearer {h.token}\r\n".encode())
    return body, auth, raw_req


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_request_gets_a_typed_4xx_and_changes_nothing(
        hostile: Hostile, case: Case) -> None:
    """Each malformed, oversize, mistyped or unauthenticated request to any endpoint of the
    node is answered with its typed 4xx JSON error, never a 5xx; the node stays up, and no
    envelope, inbox entry, hop, card or node key is stored (the audit log may only gain
    refusal entries)."""
    h = hostile
    what = f"[{case.id}]"
    body, auth, raw_req = _resolve(h, case)
    before, seq = quiet(h)
    if raw_req is not None:
        status, answer = await asyncio.to_thread(raw, h, case.face, raw_req,
                                                 as_node=case.as_node)
    else:
        status, answer = await http(h, case.face, case.method, case.path, body=body,
                                    content_type=case.content_type, auth=auth,
                                    stream_bytes=case.stream_bytes, as_node=case.as_node)
    code = error_of(status, answer, what)
    assert (status, code) == (case.status, case.code), \
        f"{what}: expected {case.status} {case.code}, got {status} {code}: {answer[:300]!r}"
    assert_still_serving(h, what)
    assert_nothing_stored(h, before, seq, what)


async def test_the_table_reaches_the_handlers(hostile: Hostile) -> None:
    """Control for the table: the well-formed versions of its requests are accepted, so each
    refusal above is the handler's answer to the hostile part, not a harness mistake."""
    h = hostile
    status, answer = await http(h, "fed", "POST", protocol.TRANSACTION_PATH,
                                body=codec.pack(fed_body()), content_type=MSGPACK)
    assert (status, codec.unpack(answer, what="a", max_bytes=4096)) == (200, {"results": []})
    nl_signing = (h.net.certs / "nl" / SIGNING_CERT_FILE).read_bytes()
    status, answer = await http(h, "fed", "POST", protocol.DIRECTORY_PATH, content_type=MSGPACK,
                                body=codec.pack({"origin": "nl", "node_cert": nl_signing,
                                                 "cards": []}))
    assert (status, codec.unpack(answer, what="a", max_bytes=4096)) == \
        (200, {"stored": 0, "refused": 0})
    status, answer = await http(h, "api", "POST", "/api/v1/login/challenge",
                                body=b'{"officer": "be/mpeeters"}', content_type=JSON)
    assert status == 200, answer
    for path in ("/api/v1/inbox?after=0&limit=500", "/api/v1/directory"):
        status, answer = await http(h, "api", "GET", path, auth=f"Bearer {h.token}")
        assert status == 200, (path, answer[:200])
    status, answer = await asyncio.to_thread(
        raw, h, "api", b"GET /api/v1/inbox HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       + f"Authorization: Bearer {h.token}\r\n\r\n".encode())
    assert status == 200, answer[:200]


@dataclass(frozen=True)
class ItemCase:
    id: str
    path: str
    items: list[bytes] = field(default_factory=list)


ITEM_CASES = [
    ItemCase("transaction of garbage envelopes", protocol.TRANSACTION_PATH,
             [b"", RANDOM, codec.pack([1, 2, 3, 4, 5]), _deep(50), b"\xc1"]),
    ItemCase("directory push of garbage cards", protocol.DIRECTORY_PATH,
             [b"", RANDOM, codec.pack({"card": 1}), _deep(50), b"\xc1"]),
]


@pytest.mark.parametrize("case", ITEM_CASES, ids=[c.id for c in ITEM_CASES])
async def test_garbage_items_in_a_well_formed_batch_are_refused_one_by_one(
        hostile: Hostile, case: ItemCase) -> None:
    """A well-formed transaction or directory push from a real peer whose items are garbage:
    each item is refused with a typed code, nothing is stored. Each garbage card has its
    refusal audit entry; garbage envelopes are tallied per peer and window."""
    h = hostile
    before, seq = quiet(h)
    if case.path == protocol.TRANSACTION_PATH:
        body = codec.pack(fed_body(envelopes=case.items))
    else:
        body = codec.pack({"origin": "nl", "cards": case.items, "node_cert":
                           (h.net.certs / "nl" / SIGNING_CERT_FILE).read_bytes()})
    status, answer = await http(h, "fed", "POST", case.path, body=body, content_type=MSGPACK)
    assert status == 200, answer[:300]
    result = codec.unpack(answer, what="answer", max_bytes=1 << 20)
    if case.path == protocol.TRANSACTION_PATH:
        assert len(result["results"]) == len(case.items)
        for item, (state, code, detail) in zip(case.items, result["results"], strict=True):
            assert state == protocol.REFUSED and code in KNOWN_CODES and detail, \
                (item[:20], state, code, detail)
        # No key verifies them: tallied, one entry per window, not one per item.
        _, codes = garbage_tally(h.net, TARGET, after=seq, at_least=len(case.items))
        assert sum(codes.values()) == len(case.items), codes
    else:
        assert result == {"stored": 0, "refused": len(case.items)}
        assert len([r for r in audit_rows(h.net, TARGET, after=seq)
                    if r.event == "directory.refused"]) == len(case.items)
    assert_still_serving(h, case.id)
    assert_nothing_stored(h, before, seq, case.id)


# --- 5. an officer submitting a broken envelope ----------------------------------------------


async def test_truncated_or_garbled_envelope_from_an_officer_is_refused_with_its_code(
        hostile: Hostile) -> None:
    """Marie (logged in on BE) submits her own envelope cut short, with bytes appended, with
    a flipped body byte and with a flipped signature byte: each gets 400 with the typed
    code, is audited as refused, and stores nothing. Control: the intact envelope is then
    accepted."""
    h = hostile
    async with h.marie.session() as be:
        directory = await directory_with(be, h.jan.id)
    env = h.marie.seal(directory, [h.jan.id], b"garbled on the way")
    good = env.to_bytes()
    flip_last = good[:-1] + bytes([good[-1] ^ 0x01])  # inside the signature
    at = good.index(env.body_bytes) + len(env.body_bytes) - 3  # inside the key wraps
    flip_body = good[:at] + bytes([good[at] ^ 0x80]) + good[at + 1:]
    variants = {
        "truncated by 1": (good[:-1], "malformed"),
        "truncated to half": (good[:len(good) // 2], "malformed"),
        "trailing byte": (good + b"\x00", "malformed"),
        "body byte flipped": (flip_body, "bad_signature"),
        "signature byte flipped": (flip_last, "bad_signature"),
    }
    for what, (garbled, expected) in variants.items():
        before, seq = quiet(h)
        status, answer = await http(h, "api", "POST", "/api/v1/envelopes", body=garbled,
                                    content_type=ENVELOPE, auth=f"Bearer {h.token}")
        code = error_of(status, answer, what)
        assert (status, code) == (400, expected), f"{what}: {status} {answer[:300]!r}"
        assert_nothing_stored(h, before, seq, what)
        refusals = [r for r in audit_rows(h.net, TARGET, after=seq)
                    if r.event == "envelope.refused"]
        assert len(refusals) == 1 and refusals[0].actor == h.marie.id, refusals
        assert refusals[0].detail["code"] == expected and refusals[0].detail["layer"] == "origin"
    assert_still_serving(h, "garbled envelopes")
    status, answer = await http(h, "api", "POST", "/api/v1/envelopes", body=good,
                                content_type=ENVELOPE, auth=f"Bearer {h.token}")
    assert status == 202 and json.loads(answer)["status"] == "accepted", answer[:300]
    # Let its relay to NL finish, so no later test sees BE's relay audit entry mid-case.
    wait_for(lambda: _hop_state(h, env.id, "nl") == "delivered", timeout=30,
             what="the control envelope to reach NL")


def _hop_state(h: Hostile, envelope_id: bytes, node: str) -> str | None:
    with contextlib.closing(sqlite3.connect(h.net.database(TARGET), timeout=10)) as db:
        row = db.execute("SELECT state FROM hops WHERE envelope_id = ? AND node = ?",
                         (envelope_id, node)).fetchone()
    return str(row[0]) if row else None


async def test_garbage_batches_are_answered_per_envelope_and_audited_once_per_window(
        hostile: Hostile) -> None:
    """Ten transactions of 1,024 envelopes no key verifies, from NL's real certificate
    (before issue 14: 10,240 audit rows). Each envelope still gets its own refusal in the
    answer (the sender needs it), but the audit holds one `peer.envelopes_refused` entry
    per window with the count, the codes, and digests of the first and last envelope; their
    counts add up to every envelope refused."""
    h = hostile
    n, batches = protocol.MAX_TRANSACTION_ENVELOPES, 10
    _, seq = quiet(h)
    started = time.monotonic()
    for b in range(batches):
        items = [f"garbage {b}/{i}".encode() for i in range(n)]
        status, answer = await http(h, "fed", "POST", protocol.TRANSACTION_PATH,
                                    body=txn("nl", *items), content_type=MSGPACK)
        assert status == 200, answer[:300]
        results = codec.unpack(answer, what="answer", max_bytes=1 << 24)["results"]
        assert len(results) == n and {tuple(r[:2]) for r in results} == \
            {(protocol.REFUSED, "malformed")}
    rows, codes = garbage_tally(h.net, TARGET, after=seq, at_least=n * batches)
    elapsed = time.monotonic() - started
    assert codes == {"malformed": n * batches}, codes
    # One entry per window at most, plus the one that opens the spell.
    assert len(rows) <= 2 + elapsed / AUDIT_WINDOW_S, (len(rows), elapsed)
    last = f"garbage {batches - 1}/{n - 1}".encode()
    assert rows[-1].detail["last"] == "sha256:" + hashlib.sha256(last).hexdigest()[:32]
    assert all(r.detail["first"].startswith("sha256:") for r in rows)
    others = [r for r in audit_rows(h.net, TARGET, after=seq) if r.event == "envelope.refused"]
    assert others == [], others[:3]
    assert_still_serving(h, "garbage batches")
    print(f"\n{n * batches} garbage envelopes in {batches} transactions: {len(rows)} audit "
          f"entries in {elapsed:.1f} s")
