"""Several workers for one national node (issue 17), with real processes on one SQLite
file: each worker is a `liaison node serve` of the same node config with listeners of its
own (docs/operations.md, "Several workers for one node").

- A live follower on worker B sees every envelope committed by worker A, once, in order
  (the issue's report: on one worker per stream it never did).
- A peer lists both workers of a node; the peer's worker A is SIGKILLed and sending goes
  on to worker B. The lease holder among our own two workers is SIGKILLed and the other
  takes the peer's sender lease over (a higher fencing token). Every envelope reaches the
  recipient's inbox once, nothing stays queued, and each node's audit is one chain.
- A revocation written through one worker is refused by the other (its cached keys
  follow the key epoch)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sqlite3
import time
import tomllib
from collections.abc import Callable
from typing import Any

import tomli_w

from liaison_net import errors
from liaison_net.client.session import InboxEntry, NodeSession
from liaison_net.drills.harness import NodeProcess, free_ports
from liaison_net.store.lease_store import sender_lease
from tests.integration.network import Network, run_cli
from tests.integration.officers import OfficerAgent, enrol
from tests.integration.test_first_alert import directory_with
from tests.waits import PATIENCE_S

WORKERS = {"delivery": {"lease_s": 1.5, "inbox_poll_s": 0.2}}

#: Checkpoints often, so that both workers would offer them if both could.
CHECKPOINTS = {"audit": {"checkpoint_every": 5, "checkpoint_seconds": 0.3}}

#: The one wait here whose bound is the property under test: a follower on the other
#: worker must see an entry long before the stream's own fallback poll (30 s) could have
#: found it. Expected well under a second (``inbox_poll_s`` 0.2 s); the bound leaves a
#: hundredfold headroom for a loaded machine. (The issue waited 21 s and saw nothing.)
CROSS_WORKER_BOUND_S = 20.0


def add_worker(net: Network, nid: str) -> NodeProcess:
    """A second worker of node ``nid``: its config, with listeners of its own, in the same
    directory (so the same data and certificates); stopped with the network."""
    first = net.nodes[nid]
    config = tomllib.loads(first.config.read_text())
    federation, client = free_ports(2)
    config["listen"] = {"federation": f"127.0.0.1:{federation}",
                        "client": f"127.0.0.1:{client}"}
    path = first.config.with_name(f"{nid}-2.toml")
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    worker = NodeProcess(nid, path, federation, client,
                         first.log.with_name(f"{nid}-2.log"), log_level=first.log_level)
    net.nodes[f"{nid}#2"] = worker
    return worker


def list_peer_urls(net: Network, nid: str, peer: str, urls: list[str]) -> None:
    """Every worker of ``nid`` reaches ``peer`` at ``urls`` (its workers' listeners)."""
    for node in [n for n in net.nodes.values() if n.id == nid]:
        config = tomllib.loads(node.config.read_text())
        for entry in config["peers"]:
            if entry["id"] == peer:
                entry.pop("url", None)
                entry["urls"] = urls
        node.config.write_text(tomli_w.dumps(config), encoding="utf-8")


def at_worker(agent: OfficerAgent, worker: NodeProcess) -> NodeSession:
    """The officer's session with one worker of its node (same node, same certificate)."""
    return NodeSession(dataclasses.replace(agent.keystore, node_url=worker.client_url))


def query(net: Network, nid: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return db.execute(sql, params).fetchall()


def freeze_outside_a_write(net: Network, worker: NodeProcess) -> None:
    """SIGSTOP ``worker`` at a moment it holds no SQLite write lock. One frozen inside a
    write transaction holds the lock, and every other worker's writes wait for it and then
    fail (docs/operations.md): what this test is about is the lease, so such a freeze is
    undone (SIGCONT) and tried again."""
    assert worker.proc is not None
    for _ in range(20):
        worker.proc.send_signal(signal.SIGSTOP)
        with contextlib.closing(sqlite3.connect(net.database(worker.id), timeout=2.0,
                                                isolation_level=None)) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:
                pass  # locked for 2 s: the frozen worker was writing
        worker.proc.send_signal(signal.SIGCONT)
    raise AssertionError(f"could not freeze {worker.id} outside a write in 20 tries")


async def until(condition: Callable[[], Any], *, what: str,
                timeout: float = PATIENCE_S) -> Any:
    try:
        async with asyncio.timeout(timeout):
            while not (value := condition()):
                await asyncio.sleep(0.05)
            return value
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def follower_sees_the_other_workers_commits(
        sender_agent: OfficerAgent, a: NodeProcess, follower_agent: OfficerAgent,
        b: NodeProcess, *, count: int, engine: str = "SQLite") -> None:
    """``count`` envelopes submitted at worker ``a``, each seen once, in order, by a live
    follower on worker ``b`` (no gap, no repeat against B's own inbox listing)."""
    jan, piet = sender_agent, follower_agent
    seen: list[InboxEntry] = []

    async def follow(session: NodeSession) -> None:
        async with contextlib.aclosing(session.follow(0)) as entries:
            async for entry in entries:
                seen.append(entry)

    async with at_worker(jan, a) as sender, at_worker(piet, b) as follower:
        directory = await directory_with(sender, piet.id)
        sent: list[str] = []
        async with asyncio.TaskGroup() as tasks:
            following = tasks.create_task(follow(follower))
            lags = []
            for i in range(count):
                envelope = jan.seal(directory, [piet.id], f"alert {i}".encode())
                assert (await sender.submit(envelope.to_bytes())).status == "accepted"
                sent.append(envelope.header.id_text)
                accepted = time.monotonic()
                # Committed by worker A; worker B's stream must find it by itself.
                await until(lambda: len(seen) >= len(sent), timeout=CROSS_WORKER_BOUND_S,
                            what=f"envelope {i} (committed by worker A) at B's follower")
                lags.append(time.monotonic() - accepted)
            print(f"\ncross-worker live delivery on {engine}: at most {max(lags):.2f} s "
                  "after accepted (inbox_poll_s 0.2)")
            await asyncio.sleep(0.5)  # room for a repeat to show up, if one would
            following.cancel()
        inbox = await follower.inbox_all()
    assert [e.id for e in seen] == sent
    assert [e.seq for e in seen] == [e.seq for e in inbox], "a gap or a repeat"


async def test_a_follower_on_one_worker_sees_what_another_worker_committed(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl",), sections=WORKERS)
    jan = enrol(net, "nl/jdevries")
    piet = enrol(net, "nl/pbakker")
    a, b = net.nodes["nl"], add_worker(net, "nl")
    net.start("nl")
    net.start("nl#2")
    await follower_sees_the_other_workers_commits(jan, a, piet, b, count=6)


async def test_failover_between_peer_workers_and_lease_takeover_lose_nothing(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections={**WORKERS, **CHECKPOINTS})
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    nl_workers = [net.nodes["nl"], add_worker(net, "nl")]
    be_a, be_b = net.nodes["be"], add_worker(net, "be")
    list_peer_urls(net, "nl", "be", [be_a.federation_url, be_b.federation_url])
    list_peer_urls(net, "be", "nl", [w.federation_url for w in nl_workers])
    for key in ("nl", "nl#2", "be", "be#2"):
        net.start(key)
    lease = sender_lease("be")

    def holder() -> tuple[int, int] | None:
        """(PID, token) of the nl worker holding the sender lease to be, if valid."""
        rows = query(net, "nl", "SELECT holder, token FROM leases WHERE name = ?", (lease,))
        return (int(rows[0][0].split("/")[2]), int(rows[0][1])) if rows else None

    first = await until(holder, what="an nl worker to take the sender lease to be")
    holding = next(w for w in nl_workers if w.pid == first[0])
    other = next(w for w in nl_workers if w is not holding)
    sent: list[str] = []

    def delivered() -> int:
        return int(query(net, "be", "SELECT COUNT(*) FROM inbox i JOIN envelopes e "
                                    "ON e.id = i.envelope_id WHERE i.officer = ? "
                                    "AND e.kind = 'message'", (marie.id,))[0][0])

    async with at_worker(jan, other) as nl:
        directory = await directory_with(nl, marie.id)

        async def send(n: int) -> None:
            for _ in range(n):
                envelope = jan.seal(directory, [marie.id], f"alert {len(sent)}".encode())
                assert (await nl.submit(envelope.to_bytes())).status == "accepted"
                sent.append(envelope.header.id_text)

        await send(10)
        await until(lambda: delivered() == 10, what="the first 10 at be")
        # The peer's worker A dies: nl's sender fails over to be's worker B.
        await asyncio.to_thread(be_a.signal, signal.SIGKILL)
        await send(10)
        await until(lambda: delivered() == 20, what="10 more through be's worker B")
        # Our lease holder dies mid-stream: the other nl worker takes the lease over.
        await send(10)
        await asyncio.to_thread(holding.signal, signal.SIGKILL)
        killed = time.monotonic()
        await send(10)
        await until(lambda: (h := holder()) is not None and h[0] == other.pid,
                    what="the other nl worker to take the lease over")
        print(f"\nlease taken over {time.monotonic() - killed:.2f} s after the holder's "
              "SIGKILL (lease_s 1.5)")
        await until(lambda: delivered() == 40, what="every envelope after the takeover")
        print(f"all 40 delivered {time.monotonic() - killed:.2f} s after the SIGKILL")
        taken = holder()
        assert taken is not None and taken[0] == other.pid and taken[1] > first[1]
        await asyncio.sleep(1.0)  # room for a duplicate to show up, if one would

    ids = query(net, "be", "SELECT i.envelope_id FROM inbox i JOIN envelopes e "
                           "ON e.id = i.envelope_id WHERE i.officer = ? AND e.kind = 'message'",
                (marie.id,))
    assert len(ids) == len(sent) == 40
    assert len({row[0] for row in ids}) == 40
    assert query(net, "nl", "SELECT state, COUNT(*) FROM hops h JOIN envelopes e ON "
                            "e.id = h.envelope_id WHERE e.kind = 'message' GROUP BY state") \
        == [("delivered", 40)]
    # One sender at a time: each envelope's relay was recorded once, by one worker.
    relays = query(net, "nl", "SELECT a.envelope_id, COUNT(*) FROM audit_named a JOIN envelopes e "
                              "ON e.id = a.envelope_id WHERE a.event = 'envelope.relayed' "
                              "AND e.kind = 'message' GROUP BY a.envelope_id")
    assert len(relays) == 40 and all(count == 1 for _, count in relays)
    status = json.loads(run_cli("admin", "status", "--config", str(other.config),
                                "--json").stdout)
    assert status["senders"]["be"]["holder"].split("/")[2] == str(other.pid)
    assert status["senders"]["be"]["token"] == taken[1]
    assert "peer.failover" in holding.log.read_text() + other.log.read_text()
    # Checkpoints too: only the worker sending to BE offers them (two workers' offers
    # crossing would look like a rollback to the witness), and BE saw no alarm.
    other_log = other.log.read_text()
    assert "audit.checkpoint" not in other_log[:other_log.index("lease.taken")]
    await until(lambda: query(net, "nl", "SELECT COUNT(*) FROM cosignatures WHERE node = 'nl' "
                                         "AND witness = 'be'")[0][0] > 0,
                what="be to witness nl's checkpoints")
    assert query(net, "be", "SELECT COUNT(*) FROM checkpoint_alarms")[0][0] == 0
    for nid in ("nl", "be"):
        verdict = json.loads(run_cli("admin", "audit", "verify", "--config",
                                     str(net.nodes[nid].config), "--json").stdout)
        assert verdict["ok"] is True, verdict


async def revocation_through_the_other_worker(jan: OfficerAgent, piet: OfficerAgent,
                                             a: NodeProcess, b: NodeProcess) -> None:
    """Jan's keys cached at worker A (it accepts his envelope), his revocation written
    through worker B: from then on both workers refuse him (A follows the key epoch)."""
    async with at_worker(jan, a) as at_a, at_worker(jan, b) as at_b:
        directory = await directory_with(at_a, piet.id)

        async def submit(session: NodeSession) -> str:
            envelope = jan.seal(directory, [piet.id], b"alert")
            try:
                return (await session.submit(envelope.to_bytes())).status
            except errors.Revoked:
                return "revoked"

        assert await submit(at_a) == "accepted"  # jan's keys are in A's cache now
        revoked = json.loads(run_cli("admin", "revoke", "officer", jan.id, "--reason",
                                     "laptop stolen", "--config", str(b.config),
                                     "--json").stdout)
        assert revoked["written_by"] == "node"
        try:
            async with asyncio.timeout(PATIENCE_S):
                while (status := await submit(at_a)) == "accepted":
                    await asyncio.sleep(0.1)  # until A has looked at the key epoch (0.2 s)
        except TimeoutError:
            raise AssertionError("worker A still accepts the revoked key") from None
        assert status == "revoked"
        assert [await submit(at_a), await submit(at_b)] == ["revoked", "revoked"]


async def test_a_revocation_through_one_worker_is_refused_by_the_other(
        make_network: type[Network]) -> None:
    """Worker A has the officer's keys cached (it accepted his envelope); the revocation is
    written through worker B (the admin socket is the last-started worker's). A refuses the
    revoked key from then on: the key epoch tells it its cache is stale."""
    net = make_network.create(node_ids=("nl",), sections=WORKERS)
    jan = enrol(net, "nl/jdevries")
    piet = enrol(net, "nl/pbakker")
    a, b = net.nodes["nl"], add_worker(net, "nl")
    net.start("nl")
    net.start("nl#2")
    await revocation_through_the_other_worker(jan, piet, a, b)


async def test_a_paused_lease_holder_is_fenced_off_when_it_wakes(
        make_network: type[Network]) -> None:
    """The lease holder is frozen (SIGSTOP: a stalled VM, a long GC) while envelopes flow;
    the other worker takes the lease over and delivers them. Woken (SIGCONT), the old
    holder finds its lease gone (``lease.lost``) and stops sending: whatever it had in
    flight cannot be recorded under its stale token. Every envelope is delivered and its
    relay audited once."""
    net = make_network.create(node_ids=("nl", "be"), sections={**WORKERS, **CHECKPOINTS})
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    nl_workers = [net.nodes["nl"], add_worker(net, "nl")]
    list_peer_urls(net, "be", "nl", [w.federation_url for w in nl_workers])
    for key in ("nl", "nl#2", "be"):
        net.start(key)
    lease = sender_lease("be")

    def holder() -> tuple[int, int] | None:
        rows = query(net, "nl", "SELECT holder, token FROM leases WHERE name = ?", (lease,))
        return (int(rows[0][0].split("/")[2]), int(rows[0][1])) if rows else None

    def delivered() -> int:
        return int(query(net, "be", "SELECT COUNT(*) FROM inbox i JOIN envelopes e "
                                    "ON e.id = i.envelope_id WHERE i.officer = ? "
                                    "AND e.kind = 'message'", (marie.id,))[0][0])

    first = await until(holder, what="an nl worker to take the sender lease to be")
    frozen = next(w for w in nl_workers if w.pid == first[0])
    other = next(w for w in nl_workers if w is not frozen)
    assert frozen.proc is not None
    async with at_worker(jan, other) as nl:
        directory = await directory_with(nl, marie.id)
        sent = 0

        async def send(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                envelope = jan.seal(directory, [marie.id], f"alert {sent}".encode())
                assert (await nl.submit(envelope.to_bytes())).status == "accepted"
                sent += 1

        await send(5)
        await until(lambda: delivered() == 5, what="the first 5 at be")
        await asyncio.to_thread(freeze_outside_a_write, net, frozen)
        try:
            await send(10)
            await until(lambda: delivered() == 15, what="delivery by the worker that took over")
            taken = holder()
            assert taken is not None and taken[0] == other.pid and taken[1] > first[1]
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        await until(lambda: "lease.lost" in frozen.log.read_text(),
                    what="the woken worker to find its lease gone")
        await send(5)
        await until(lambda: delivered() == 20, what="the last 5 at be")
        await asyncio.sleep(1.0)  # room for a stale record to show up, if one would
    assert holder() == taken
    relays = query(net, "nl", "SELECT a.envelope_id, COUNT(*) FROM audit_named a JOIN envelopes e "
                              "ON e.id = a.envelope_id WHERE a.event = 'envelope.relayed' "
                              "AND e.kind = 'message' GROUP BY a.envelope_id")
    assert len(relays) == 20 and all(count == 1 for _, count in relays)
    verdict = json.loads(run_cli("admin", "audit", "verify", "--config",
                                 str(net.nodes["nl"].config), "--json").stdout)
    assert verdict["ok"] is True, verdict
