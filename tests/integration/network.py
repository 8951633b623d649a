"""A real federated network for tests: PKI made by our CLI, real node processes on loopback.

Every process a test starts is recorded by PID and killed by the fixture's teardown, even
when the test fails. Conditions are awaited by bounded polling, never by fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from liaison_net.federation.tls import client_context, officer_client_context
from liaison_net.pki.certificates import node_hostname

LIAISON = [sys.executable, "-m", "liaison_net.cli"]
NODE_IDS = ("be", "nl", "lu", "de-nw")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None,
            input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*LIAISON, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"liaison {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class NodeHandle:
    id: str
    config: Path
    federation_port: int
    client_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def federation_url(self) -> str:
        return f"https://127.0.0.1:{self.federation_port}"


@dataclass
class Network:
    root: Path
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    extra_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs / "ca.crt"

    @classmethod
    def create(cls, root: Path, node_ids: tuple[str, ...] = ("nl", "be"),
               peer_urls: dict[tuple[str, str], str] | None = None,
               delivery: str = "backoff_initial_s = 0.2\nbackoff_max_s = 2.0\n"
                               "expiry_sweep_s = 0.5\ndirectory_push_s = 0.3\n"
                               "request_timeout_s = 5.0\n",
               extra_toml: str = "") -> Network:
        """PKI and configs for ``node_ids``; ``peer_urls[(a, b)]`` overrides how a reaches b."""
        net = cls(root)
        run_cli("admin", "init-network", "--dir", str(net.certs))
        for nid in node_ids:
            run_cli("admin", "init-node", nid, "--dir", str(net.certs),
                    "--ca-dir", str(net.certs))
            net.nodes[nid] = NodeHandle(nid, root / "configs" / f"{nid}.toml", free_port(),
                                        free_port(), root / "logs" / f"{nid}.log")
        (root / "configs").mkdir(exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        for nid, handle in net.nodes.items():
            peers = "".join(
                f'\n[[peers]]\nid = "{other.id}"\n'
                f'url = "{(peer_urls or {}).get((nid, other.id), other.federation_url)}"\n'
                for other in net.nodes.values() if other.id != nid)
            handle.config.write_text(
                f'[node]\nid = "{nid}"\ndata_dir = "../data/{nid}"\n'
                f'cert_dir = "../certs/{nid}"\n\n'
                f'[listen]\nfederation = "127.0.0.1:{handle.federation_port}"\n'
                f'client = "127.0.0.1:{handle.client_port}"\n\n[delivery]\n{delivery}\n'
                f'{extra_toml}\n{peers}')
        return net

    def start(self, nid: str, *, wait: bool = True) -> NodeHandle:
        handle = self.nodes[nid]
        assert handle.proc is None or handle.proc.poll() is not None, f"{nid} already running"
        log = handle.log.open("ab")
        handle.proc = subprocess.Popen([*LIAISON, "node", "serve", "--config", str(handle.config)],
                                       stdout=log, stderr=log, start_new_session=True)
        log.close()
        if wait:
            self.wait_ready(nid)
        return handle

    def wait_ready(self, nid: str, timeout: float = 30) -> None:
        handle = self.nodes[nid]

        def listening() -> bool:
            assert handle.proc is not None
            if handle.proc.poll() is not None:
                raise AssertionError(f"node {nid} exited with {handle.proc.returncode}:\n"
                                     f"{handle.log.read_text()[-3000:]}")
            for port in (handle.client_port, handle.federation_port):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) != 0:
                        return False
            return True

        wait_for(listening, timeout=timeout, what=f"node {nid} to listen")

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        handle = self.nodes[nid]
        if handle.proc is not None and handle.proc.poll() is None:
            os.kill(handle.proc.pid, sig)
            handle.proc.wait(timeout=30)

    def stop_all(self) -> None:
        for handle in self.nodes.values():
            if handle.proc is not None and handle.proc.poll() is None:
                os.kill(handle.proc.pid, signal.SIGKILL)
                handle.proc.wait(timeout=30)
        for proc in self.extra_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    def database(self, nid: str) -> Path:
        return self.root / "data" / nid / "node.sqlite3"


# --- what a node has stored, read straight from its database ---------------------------------

#: Tables whose rows are stored content: no refused input may add to them.
STORED_TABLES = ("envelopes", "inbox", "hops", "directory", "node_keys")


def row_counts(net: Network, nid: str,
               tables: tuple[str, ...] = STORED_TABLES) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}


@dataclass(frozen=True)
class AuditRow:
    seq: int
    event: str
    actor: str
    detail: dict[str, Any]
    envelope_id: bytes | None


def audit_rows(net: Network, nid: str, *, after: int = 0) -> list[AuditRow]:
    """The node's audit entries with seq > ``after``, detail decoded from its JSON."""
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        rows = db.execute("SELECT seq, event, actor, detail, envelope_id FROM audit "
                          "WHERE seq > ? ORDER BY seq", (after,)).fetchall()
    return [AuditRow(r[0], r[1], r[2], json.loads(r[3]),
                     bytes(r[4]) if r[4] is not None else None) for r in rows]


def last_audit_seq(net: Network, nid: str) -> int:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0])


# --- speaking to a node as someone else: a peer (mutual TLS) or an officer's raw HTTP --------


def peer_tls(net: Network, as_node: str) -> ssl.SSLContext:
    """The client TLS context a node uses to call its peers, from ``as_node``'s real
    certificate: what a compromised or misbehaving peer holds."""
    return client_context(net.certs / as_node)


def officer_tls(net: Network) -> ssl.SSLContext:
    return officer_client_context(net.ca_cert)


def raw_https(port: int, ctx: ssl.SSLContext, server_hostname: str, request: bytes,
              timeout: float = 10) -> tuple[int, bytes]:
    """Send ``request`` bytes as they are over TLS to 127.0.0.1:``port``; (status, body).

    For what an HTTP client library will not send: header bytes that are not UTF-8, a
    Content-Length that promises more than follows. Reads until the server closes or the
    answer's Content-Length is complete.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock, \
            ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
        tls.sendall(request)
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLZeroReturnError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length" and \
                            len(body) >= int(value.strip()):
                        return int(head.split(b" ", 2)[1]), body[:int(value.strip())]
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise AssertionError(f"no HTTP answer on port {port}: {data[:200]!r}")
    return int(head.split(b" ", 2)[1]), body


def healthz(net: Network, nid: str) -> dict[str, Any]:
    """The node's /healthz answer over its officer listener (raises if it does not answer)."""
    status, body = raw_https(net.nodes[nid].client_port, officer_tls(net), node_hostname(nid),
                             b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200, (status, body[:200])
    return dict(json.loads(body))


async def https(port: int, ctx: ssl.SSLContext, server_hostname: str, method: str, path: str, *,
                data: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request to 127.0.0.1:``port`` over TLS ``ctx``; (status, body). No Content-Type
    is added unless ``headers`` names one (an async iterator as ``data`` is sent chunked)."""
    headers = headers or {}
    connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.request(
            method, f"https://127.0.0.1:{port}{path}", data=data, headers=headers,
            server_hostname=server_hostname, timeout=aiohttp.ClientTimeout(total=30),
            skip_auto_headers=() if "Content-Type" in headers else ("Content-Type",)) as resp:
        return resp.status, await resp.read()
