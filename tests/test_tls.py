"""Mutual TLS 1.3 on real sockets: who gets in, and what the server learns about them."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net import errors
from liaison_net.federation.tls import (
    client_context,
    officer_client_context,
    peer_node_id,
    server_context,
)
from liaison_net.pki import certificates

NOW = datetime.now(UTC)  # real handshakes check validity against the real clock
WAIT = 5.0  # seconds; every network wait is bounded by this


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """Our network (be, nl) and a foreign network's node ``xx`` under tmp_path."""
    ours, theirs = tmp_path / "certs", tmp_path / "foreign"
    certificates.init_network(ours, now=NOW)
    certificates.init_network(theirs, now=NOW)
    for node_id in ("be", "nl"):
        certificates.init_node(ours, node_id, ca_dir=ours, now=NOW)
    certificates.init_node(theirs, "xx", ca_dir=theirs, now=NOW)
    return ours


@dataclass
class Served:
    """What a test server observed: verified peers, and handshakes it refused (and why)."""

    port: int = 0
    peers: list[str] = field(default_factory=list)
    refused: list[ssl.SSLError] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving(ctx: ssl.SSLContext) -> AsyncIterator[Served]:
    """A TLS server on 127.0.0.1:<free port> that records each handshake's outcome.

    The handshake runs in the handler (``start_tls``) rather than in ``start_server(ssl=)``
    only so the test can see the server's own ssl error: asyncio's listener drops a failed
    handshake silently, and closes the socket before the TLS alert is flushed, so the
    client sees a reset rather than the reason. ``peers`` is filled only after a completed
    handshake, i.e. when the application would get a connection.
    """
    served = Served()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(WAIT):
                await writer.start_tls(ctx)
        except ssl.SSLError as exc:
            served.refused.append(exc)
            writer.transport.abort()
            return
        try:
            node_id = peer_node_id(writer.get_extra_info("ssl_object"))
        except errors.Unauthorized:
            node_id = "<unverified>"
        served.peers.append(node_id)
        try:
            writer.write(node_id.encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        served.port = server.sockets[0].getsockname()[1]
        yield served


async def exchange(port: int, ctx: ssl.SSLContext, server_hostname: str | None = None) -> str:
    """Connect, read the server's one line, close; returns the line or raises."""
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname
        )
        try:
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
            line = await reader.readline()
            if not line:
                raise ConnectionResetError("server closed without answering")
            return line.decode().strip()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# What the client sees when the server refuses: TLS 1.3 finishes the client's side of the
# handshake before the server checks the client certificate, and asyncio drops the
# connection without flushing the alert, so it is an ssl error or a reset / early EOF.
CLIENT_SIDE_FAILURE = (ssl.SSLError, ConnectionError)


async def test_peer_from_the_same_ca_gets_in_and_is_identified(certs: Path) -> None:
    async with serving(server_context(certs / "be", require_client_cert=True)) as served:
        assert await exchange(served.port, client_context(certs / "nl")) == "nl"
    assert served.peers == ["nl"]
    assert served.refused == []


async def test_client_learns_the_server_node_id(certs: Path) -> None:
    ctx = server_context(certs / "be", require_client_cert=True)
    async with serving(ctx) as served, asyncio.timeout(WAIT):
        _, writer = await asyncio.open_connection(
            "127.0.0.1", served.port, ssl=client_context(certs / "nl")
        )
        try:
            assert peer_node_id(writer.get_extra_info("ssl_object")) == "be"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_peer_certified_by_another_ca_is_refused_in_the_handshake(certs: Path) -> None:
    """A foreign node that trusts our (public) CA certificate still cannot get in."""
    intruder = certs.parent / "foreign" / "xx"
    shutil.copyfile(certs / "ca.crt", intruder / "ca.crt")  # so it accepts our server
    async with serving(server_context(certs / "be", require_client_cert=True)) as served:
        with pytest.raises(CLIENT_SIDE_FAILURE):
            await exchange(served.port, client_context(intruder))
    assert served.peers == []  # the application never got a connection
    assert len(served.refused) == 1
    assert served.refused[0].reason == "CERTIFICATE_VERIFY_FAILED"


async def test_listener_never_hands_a_foreign_peer_to_the_application(certs: Path) -> None:
    """The way aiohttp listens, ``start_server(ssl=...)``: the handler is never called."""
    intruder = certs.parent / "foreign" / "xx"
    shutil.copyfile(certs / "ca.crt", intruder / "ca.crt")
    handled: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append(peer_node_id(writer.get_extra_info("ssl_object")))
        writer.write(handled[-1].encode() + b"\n")
        writer.close()

    ctx = server_context(certs / "be", require_client_cert=True)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(CLIENT_SIDE_FAILURE):
            await exchange(port, client_context(intruder))
        assert await exchange(port, client_context(certs / "nl")) == "nl"
    assert handled == ["nl"]  # only the member of the network


async def test_node_of_another_network_refuses_our_server(certs: Path) -> None:
    stranger = certs.parent / "foreign" / "xx"
    async with serving(server_context(certs / "be", require_client_cert=True)) as served:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await exchange(served.port, client_context(stranger))
    assert served.peers == []


async def test_client_without_a_certificate_is_refused_by_the_federation_listener(
    certs: Path,
) -> None:
    async with serving(server_context(certs / "be", require_client_cert=True)) as served:
        with pytest.raises(CLIENT_SIDE_FAILURE):
            await exchange(served.port, officer_client_context(certs / "ca.crt"))
    assert served.peers == []
    assert [exc.reason for exc in served.refused] == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"]


async def test_tls12_is_refused(certs: Path) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    old.load_verify_locations(certs / "ca.crt")
    old.load_cert_chain(certs / "nl" / "tls.crt", certs / "nl" / "tls.key")
    async with serving(server_context(certs / "be", require_client_cert=True)) as served:
        with pytest.raises(CLIENT_SIDE_FAILURE):
            await exchange(served.port, old)
    assert served.peers == []
    assert [exc.reason for exc in served.refused] == ["UNSUPPORTED_PROTOCOL"]


async def test_officer_listener_serves_tls_without_client_certificates(certs: Path) -> None:
    """Officers authenticate by signature, so the server must not read an id from TLS."""
    async with serving(server_context(certs / "be", require_client_cert=False)) as served:
        ctx = officer_client_context(certs / "ca.crt")
        assert await exchange(served.port, ctx) == "<unverified>"
    assert served.peers == ["<unverified>"]


async def test_client_checks_the_server_host_name(certs: Path) -> None:
    async with serving(server_context(certs / "be", require_client_cert=True)) as served:
        assert await exchange(served.port, client_context(certs / "nl"), "localhost") == "nl"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await exchange(served.port, client_context(certs / "nl"), "elsewhere.example")
    assert served.peers == ["nl"]


def test_every_context_is_tls13_only_and_trusts_only_the_network_ca(certs: Path) -> None:
    contexts = [
        server_context(certs / "be", require_client_cert=True),
        server_context(certs / "be", require_client_cert=False),
        client_context(certs / "be"),
        officer_client_context(certs / "ca.crt"),
    ]
    for ctx in contexts:
        assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED
    assert contexts[2].check_hostname and contexts[3].check_hostname
    assert contexts[1].verify_mode == ssl.CERT_NONE  # officers present no certificate
    ca_der = ssl.PEM_cert_to_DER_cert((certs / "ca.crt").read_text())
    for ctx in (contexts[0], contexts[2], contexts[3]):
        assert ctx.get_ca_certs(binary_form=True) == [ca_der]  # no system trust store


def test_plain_connection_has_no_peer_node_id() -> None:
    with pytest.raises(errors.Unauthorized, match="not TLS"):
        peer_node_id(None)


def test_missing_node_files_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="tls"):
        server_context(tmp_path, require_client_cert=True)
    with pytest.raises(errors.ConfigError, match="CA certificate"):
        officer_client_context(tmp_path / "ca.crt")
