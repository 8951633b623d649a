"""A real federated network for tests: PKI made by our CLI, real node processes on loopback.

The processes are the drills' harness's (``liaison_net.drills.harness``, shared with the
demo, the bench and the chaos soak); this module adds what tests need on top: the PKI made
with the `liaison` CLI, test timings, waits that fail as assertions, and raw looks at what
a node stored. Every process a test starts is recorded by PID and killed by the fixture's
teardown, even when the test fails. Conditions are awaited by bounded polling, never by
fixed sleeps.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from liaison_net.drills.harness import (
    LIAISON,
    Deadline,
    HarnessTimeout,
    NodeProcess,
    NodeSet,
    free_ports,
)
from liaison_net.federation.tls import client_context, officer_client_context
from liaison_net.pki.certificates import node_hostname
from tests.waits import PATIENCE_S

__all__ = ["LIAISON", "Network", "NodeProcess", "free_port", "run_cli", "wait_for"]

#: Quick retries, sweeps and pushes, so a test's outage ends in a second.
TEST_DELIVERY: Mapping[str, float] = {
    "backoff_initial_s": 0.2,
    "backoff_max_s": 2.0,
    "expiry_sweep_s": 0.5,
    "directory_push_s": 0.3,
    "request_timeout_s": 5.0,
}


def free_port() -> int:
    return free_ports(1)[0]


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None,
            input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*LIAISON, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"liaison {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition: Callable[[], Any], *, timeout: float = PATIENCE_S,
             interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail, naming ``what``, after ``timeout`` s.

    The bound is never below ``PATIENCE_S`` (tests/waits.py): a caller's timeout may
    lengthen a wait (a retention window to pass), never make a loaded machine fail it."""
    try:
        return Deadline(max(timeout, PATIENCE_S)).wait_for(condition, what=f"waiting for {what}",
                                          interval=interval)
    except HarnessTimeout as exc:
        raise AssertionError(str(exc)) from None


class _PkiTemplate:
    """One network's PKI per test process, made by the `liaison` CLI as an administrator
    would, and copied into every network a test creates: a CA and each node's certificates
    cost a Python start and key generation per call, paid here once per node id instead of
    once per test. Each network gets its own copy (a test may revoke or rotate in it);
    networks of one process share the CA, which no test relies on being distinct (a test
    that needs a foreign CA makes one itself)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: Path | None = None

    def copy_into(self, certs: Path, node_ids: tuple[str, ...]) -> None:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="liaison-test-pki-")) / "certs"
                atexit.register(shutil.rmtree, self._dir.parent, True)
                run_cli("admin", "init-network", "--dir", str(self._dir))
            for nid in node_ids:
                if not (self._dir / nid).is_dir():
                    run_cli("admin", "init-node", nid, "--dir", str(self._dir),
                            "--ca-dir", str(self._dir))
            certs.mkdir(parents=True, exist_ok=False)
            for entry in self._dir.iterdir():
                if entry.is_file():
                    shutil.copy2(entry, certs / entry.name)
            for nid in node_ids:
                shutil.copytree(self._dir / nid, certs / nid)


_PKI = _PkiTemplate()


class Network(NodeSet):
    """Nodes on loopback under ``root``; ``start``/``kill`` one node, ``stop_all`` kills all."""

    @classmethod
    def create(cls, root: Path, node_ids: tuple[str, ...] = ("nl", "be"),
               peer_urls: dict[tuple[str, str], str] | None = None,
               delivery: Mapping[str, float] = TEST_DELIVERY,
               sections: Mapping[str, Mapping[str, Any]] | None = None) -> Network:
        """PKI and configs for ``node_ids``; ``peer_urls[(a, b)]`` overrides how a reaches b;
        ``sections`` adds config tables ({"store": {"retention_sweep_s": 0.2}})."""
        net = cls(root)
        _PKI.copy_into(net.certs, tuple(node_ids))
        net.lay_out(node_ids)
        net.write_configs(sections={"delivery": delivery, **(sections or {})},
                          peer_urls=peer_urls)
        return net

    def start(self, nid: str, *, wait: bool = True) -> NodeProcess:
        self.start_node(nid)
        if wait:
            self.wait_ready(nid)
        return self.nodes[nid]

    def wait_ready(self, nid: str, timeout: float = PATIENCE_S) -> None:
        self.wait_node(nid, Deadline(timeout))

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the node (SIGKILL: a crash) and wait until it has exited."""
        self.nodes[nid].signal(sig)

    def stop_all(self, *, first: int = signal.SIGKILL) -> list[int]:
        """Kill every process of this network at once, by PID (a test's teardown)."""
        return super().stop_all(first=first)


# --- what a node has stored, read straight from its database ---------------------------------

#: Tables whose rows are stored content: no refused input may add to them.
STORED_TABLES = ("envelopes", "inbox", "hops", "directory", "node_keys")


def row_counts(net: Network, nid: str,
               tables: tuple[str, ...] = STORED_TABLES) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}


def pending_effects(net: Network, nid: str) -> int:
    """Effects a decision owes that the node's drain has not issued yet: a count of stored
    rows is only stable once this is 0 (the evidence of an accept is stored just after)."""
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return int(db.execute("SELECT COUNT(*) FROM effects").fetchone()[0])


#: Rows of envelopes the node issued for officers elsewhere (evidence, notices), which it
#: deletes once every peer took them (``forget_when_delivered``, store migration 11): they
#: leave whenever a peer answers, so a settled count leaves them out, and counts instead
#: the issued envelopes from the audit chain, which only grows.
_SETTLED = {
    "envelopes": "SELECT COUNT(*) FROM envelopes WHERE id NOT IN "
                 "(SELECT envelope_id FROM forget_when_delivered)",
    "hops": "SELECT COUNT(*) FROM hops WHERE envelope_id NOT IN "
            "(SELECT envelope_id FROM forget_when_delivered)",
}
_ISSUED = "SELECT COUNT(*) FROM audit_named WHERE event IN ('evidence.issued', 'notice.issued')"


def drained_row_counts(net: Network, nid: str,
                       tables: tuple[str, ...] = STORED_TABLES) -> dict[str, int]:
    """``row_counts`` once every owed effect is issued (bounded polling), settled: an
    issued envelope awaiting its peers is not counted as a row, but as ``issued``."""
    wait_for(lambda: pending_effects(net, nid) == 0, what=f"{nid} to issue what it owes")
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        counts = {t: int(db.execute(_SETTLED.get(t, f"SELECT COUNT(*) FROM {t}")).fetchone()[0])
                  for t in tables}
        counts["issued"] = int(db.execute(_ISSUED).fetchone()[0])
    return counts


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
        rows = db.execute("SELECT seq, event, actor, detail, envelope_id FROM audit_named "
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
