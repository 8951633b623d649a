"""Storage faults (issue 9, item 4) with real node processes and real SQLite files.

When BE's database cannot grow (its `[store] max_db_mb` quota, or a real full filesystem),
BE answers 503 `storage_full`, stores and acknowledges nothing of what it refused, gives a
peer retryable refusals (so the peer keeps its outbox), shows it on /healthz and /metrics,
and resumes by itself, without a restart, once space is freed: the peer's queued envelopes
then arrive exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from liaison_net.client.directory import Directory
from liaison_net.core import codec
from liaison_net.core.delivery import HopState
from liaison_net.core.envelope import Envelope
from liaison_net.errors import LiaisonError
from liaison_net.federation import protocol
from liaison_net.http_common import ENVELOPE, MSGPACK
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import (
    Network,
    healthz,
    https,
    officer_tls,
    peer_tls,
    raw_https,
    row_counts,
    wait_for,
)
from tests.integration.officers import OfficerAgent, bearer_token, enrol
from tests.integration.test_faults import assert_exactly_once, backoff_attempts, inbox_rows
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow

FULL = "storage_full"
BIG = 64 * 1024  # plaintext per envelope: fills a small store in a few dozen submissions


def envelope_ids(net: Network, nid: str) -> set[bytes]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return {bytes(r[0]) for r in db.execute("SELECT id FROM envelopes")}


def hop_states(net: Network, nid: str, peer: str, ids: list[bytes]) -> list[str]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return [db.execute("SELECT state FROM hops WHERE node = ? AND envelope_id = ?",
                           (peer, eid)).fetchone()[0] for eid in ids]


def metric(net: Network, nid: str, name: str) -> float:
    status, body = raw_https(net.nodes[nid].client_port, officer_tls(net), node_hostname(nid),
                             b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


async def submit_raw(net: Network, officer: OfficerAgent, token: str,
                     raw: bytes) -> tuple[int, dict[str, str]]:
    """One officer submit over plain HTTPS, to see the exact status and JSON answer."""
    nid = officer.id.split("/")[0]
    status, body = await https(net.nodes[nid].client_port, officer_tls(net), node_hostname(nid),
                               "POST", "/api/v1/envelopes", data=raw,
                               headers={"Content-Type": ENVELOPE,
                                        "Authorization": f"Bearer {token}"})
    return status, dict(json.loads(body))


async def peer_transaction(net: Network, as_node: str, to: str,
                           envelopes: list[bytes]) -> list[list[str]]:
    """A federation transaction sent with ``as_node``'s real certificate: its results."""
    body = codec.pack({"origin": as_node, "txn": os.urandom(16), "envelopes": envelopes})
    status, answer = await https(net.nodes[to].federation_port, peer_tls(net, as_node),
                                 node_hostname(to), "POST", protocol.TRANSACTION_PATH,
                                 data=body, headers={"Content-Type": MSGPACK})
    assert status == 200, answer[:300]
    return list(codec.unpack(answer, what="answer", max_bytes=1 << 20)["results"])


async def fill_until_full(net: Network, marie: OfficerAgent, to: list[str],
                          directory: Directory, *, limit: int = 400
                          ) -> tuple[list[bytes], list[Envelope], dict[str, str]]:
    """Marie submits big envelopes until BE answers 503 storage_full, then small ones until
    those are refused too (so no stray page is left that a later write could take): what
    BE acknowledged, the refused envelopes, and the first refusal's JSON."""
    token = await bearer_token(marie)
    acked: list[bytes] = []
    refused: list[Envelope] = []
    first: dict[str, str] = {}
    for size in (BIG, 2048):
        for i in range(limit):
            env = marie.seal(directory, to, bytes([i % 251]) * size)
            status, answer = await submit_raw(net, marie, token, env.to_bytes())
            if status == 202:
                assert answer["status"] == "accepted"
                acked.append(env.id)
                continue
            assert status == 503, (status, answer)
            refused.append(env)
            first = first or answer
            break
        else:
            raise AssertionError(f"BE still accepted after {limit} envelopes of {size} bytes")
    return acked, refused, first


def assert_full_answer(answer: dict[str, str]) -> None:
    assert answer["error"] == FULL, answer
    assert "nothing stored" in answer["detail"]
    assert "resumes by itself when space returns" in answer["detail"]


def assert_health_full(net: Network, nid: str) -> None:
    health = healthz(net, nid)
    assert health["storage"] == "full" and health["status"] == "degraded", health
    assert health["storage_full_last_seen"] and health["storage_refused_writes"] >= 1
    assert metric(net, nid, "liaison_storage_full") == 1.0
    assert metric(net, nid, "liaison_storage_refused_writes_total") >= 1


async def check_full_then_resume(net: Network, jan: OfficerAgent, marie: OfficerAgent,
                                 free_space: object) -> None:
    """The scenario both tests share, from BE full onwards (``free_space()`` frees it)."""
    async with marie.session() as be:
        be_directory = await directory_with(be, jan.id)
    async with jan.session() as nl:
        nl_directory = await directory_with(nl, marie.id)

    # 1. An officer's submit: 503 storage_full; nothing of the refused envelope stored.
    acked, refused_envs, answer = await fill_until_full(net, marie, [jan.id], be_directory)
    refused = refused_envs[0]
    assert_full_answer(answer)
    stored = envelope_ids(net, "be")
    assert set(acked) <= stored and not stored & {e.id for e in refused_envs}
    assert_health_full(net, "be")
    # Through the client library the same answer is the typed, retryable error.
    async with marie.session() as be:
        with pytest.raises(LiaisonError) as caught:
            await be.submit(refused.to_bytes())
    assert caught.value.code == FULL

    # 2. A peer: each envelope refused with the retryable code; NL keeps them queued.
    probe = jan.seal(nl_directory, [marie.id], b"p" * BIG)
    results = await peer_transaction(net, "nl", "be", [probe.to_bytes()])
    assert results[0][:2] == [protocol.REFUSED, FULL], results
    assert FULL in protocol.RETRYABLE_CODES
    queued = [jan.seal(nl_directory, [marie.id], bytes([i]) * BIG) for i in range(5)]
    async with jan.session() as nl:
        for env in queued:
            assert (await nl.submit(env.to_bytes())).status == "accepted"
    before = backoff_attempts(net, "nl", "be")
    wait_for(lambda: backoff_attempts(net, "nl", "be") >= before + 2, timeout=30,
             what="NL to retry BE and back off")
    queued_ids = [env.id for env in queued]
    assert hop_states(net, "nl", "be", queued_ids) == [HopState.QUEUED.value] * 5
    assert not envelope_ids(net, "be") & {*queued_ids, probe.id}
    assert inbox_rows(net, "be", marie.id) == []
    assert net.nodes["be"].proc is not None and net.nodes["be"].proc.poll() is None

    # 3. Space returns: no restart; BE accepts again, NL's outbox drains exactly once.
    be_pid = net.nodes["be"].proc.pid
    freed = time.monotonic()
    free_space()  # type: ignore[operator]
    token = await bearer_token(marie)
    # Resubmitting the same bytes is safe: it is stored once (dedupe by envelope id).
    async with asyncio.timeout(60):
        while True:
            status, answer = await submit_raw(net, marie, token, refused.to_bytes())
            assert status in (202, 503), (status, answer)
            if status == 202:
                break
            await asyncio.sleep(0.5)
    resumed = time.monotonic() - freed
    assert net.nodes["be"].proc.pid == be_pid and net.nodes["be"].proc.poll() is None
    assert_exactly_once(net, "be", marie.id, [e.to_bytes() for e in queued], timeout=60)
    print(f"BE full after {len(acked)} accepted submissions; accepting again "
          f"{resumed:.2f} s after space was freed; NL's {len(queued)} queued envelopes in "
          f"the inbox {time.monotonic() - freed:.2f} s after (no restart)")
    wait_for(lambda: hop_states(net, "nl", "be", queued_ids) == ["delivered"] * 5, timeout=30,
             what="NL to mark the queued envelopes delivered")
    health = healthz(net, "be")
    assert health["storage"] == "ok" and health["status"] == "ok", health
    assert health["storage_full_last_seen"]  # the operator still sees that it happened
    assert metric(net, "be", "liaison_storage_full") == 0.0
    assert refused.id in envelope_ids(net, "be")
    assert row_counts(net, "be", ("envelopes",))["envelopes"] == len(envelope_ids(net, "be"))


def audit_ok(net: Network, nid: str) -> None:
    from tests.integration.network import run_cli

    proc = run_cli("admin", "audit", "verify", "--config", str(net.nodes[nid].config))
    assert proc.returncode == 0


# --- 1. the operator's quota ------------------------------------------------------------------


def _pages(db: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return (int(conn.execute("PRAGMA page_count").fetchone()[0]),
                int(conn.execute("PRAGMA page_size").fetchone()[0]))


async def test_quota_full_refuses_cleanly_and_resumes_without_restart(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    # BE's database exists (enrolment made it); plant a ballast table of blobs so a small
    # quota is reached fast, then give BE a quota of what it holds plus ~3 MiB.
    db = net.database("be")
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        conn.execute("CREATE TABLE ballast (b BLOB)")
        conn.executemany("INSERT INTO ballast VALUES (?)", [(os.urandom(1024),)] * 4096)
        conn.commit()
    pages, page_size = _pages(db)
    quota_mb = round((pages * page_size) / (1024 * 1024) + 3, 2)
    with net.nodes["be"].config.open("a") as config:
        config.write(f"\n[store]\nmax_db_mb = {quota_mb}\n")
    net.start("nl")
    net.start("be")

    def drop_ballast() -> None:
        # Another connection, as an operator would: the pages go to the freelist.
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            conn.execute("DROP TABLE ballast")
            conn.commit()

    await check_full_then_resume(net, jan, marie, drop_ballast)
    pages_after, _ = _pages(db)
    assert pages_after * page_size <= quota_mb * 1024 * 1024 + page_size  # quota held
    net.kill("be", signal.SIGTERM)
    audit_ok(net, "be")


# --- 2. a real full filesystem ------------------------------------------------------------------


@dataclass
class SmallDisk:
    net: Network
    mount: Path


def _mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``where``; None, or why it is not possible here."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root (os.geteuid() != 0)"
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {proc.stderr.strip()[:200]}"
    return None


def _unmount(where: Path) -> None:
    for args in (["umount", str(where)], ["umount", "-l", str(where)]):
        if subprocess.run(args, capture_output=True, timeout=30).returncode == 0:
            return


@pytest.fixture
def small_disk(make_network: type[Network]) -> Iterator[SmallDisk]:
    """NL and BE, BE's data directory on its own 12 MiB tmpfs. Teardown kills both nodes by
    PID, then unmounts, even when the test failed."""
    net = make_network.create(node_ids=("nl", "be"))
    mount = net.root / "data" / "be"
    why = _mount_tmpfs(mount, "12m")
    if why is not None:
        pytest.skip(why)
    try:
        yield SmallDisk(net, mount)
    finally:
        net.stop_all()
        _unmount(mount)


def fill_file(path: Path) -> int:
    """Write zeros to ``path`` until the filesystem is full; the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (b"\0" * (256 * 1024), b"\0" * 4096):
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return written


async def test_full_filesystem_refuses_cleanly_and_resumes(small_disk: SmallDisk) -> None:
    net = small_disk.net
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    ballast = small_disk.mount / "ballast.bin"
    async with marie.session() as be:
        await directory_with(be, jan.id)
    async with jan.session() as nl:
        await directory_with(nl, marie.id)
    assert fill_file(ballast) > 0
    assert os.statvfs(small_disk.mount).f_bavail < 64

    await check_full_then_resume(net, jan, marie, ballast.unlink)
    net.kill("be", signal.SIGTERM)
    audit_ok(net, "be")
