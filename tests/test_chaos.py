"""The chaos soak's parts that need no node: the plan, the proxy, the accounting.

The accounting tests plant each fault the soak exists to catch (a duplicate, a loss, a
refused envelope that got stored, a broken audit chain) in real node databases built
with the store's own code, so a check that cannot fail would fail here.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from liaison_net.chaos.check import Outcome, Sent, account, verify_chain
from liaison_net.chaos.plan import Action, Shape, make_plan
from liaison_net.chaos.proxy import ChaosProxy
from liaison_net.core.audit import detail
from liaison_net.core.limits import HOUR_MS
from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import SCHEMA_VERSION
from tests.core.factories import NOW, Officer, seal_from
from tests.waits import PATIENCE_S

NODES = ("be", "nl", "lu", "de-nw")

# --- the plan ------------------------------------------------------------------------------


def test_plan_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    def plan(seed: int) -> object:
        return make_plan(seed=seed, nodes=NODES, kills=20, partitions=20, duration_s=200)

    assert plan(7) == plan(7)
    assert plan(7) != plan(8)


@pytest.mark.parametrize("seed", range(20))
def test_plan_counts_order_and_bounds(seed: int) -> None:
    shape = Shape()
    plan = make_plan(seed=seed, nodes=NODES, kills=12, partitions=9, duration_s=90,
                     shape=shape)
    assert plan.kills == 12 and plan.partitions == 9
    assert all(0 < f.at_s <= 90 for f in plan.faults)
    assert [f.at_s for f in plan.faults] == sorted(f.at_s for f in plan.faults)
    down: set[str] = set()
    cut: set[tuple[str, ...]] = set()
    for fault in plan.faults:  # replay: every kill meets a node up, every restart one down
        if fault.action is Action.KILL:
            assert fault.target[0] not in down
            down.add(fault.target[0])
            assert len(down) <= shape.max_down
        elif fault.action is Action.RESTART:
            down.remove(fault.target[0])
        elif fault.action is Action.CUT:
            assert fault.target not in cut and fault.target == tuple(sorted(fault.target))
            cut.add(fault.target)
        else:
            cut.remove(fault.target)
    assert not down and not cut  # everything comes back within the run


def test_plan_refuses_a_run_too_short_for_its_faults() -> None:
    with pytest.raises(ValueError, match="no time for faults"):
        make_plan(seed=1, nodes=NODES, kills=3, partitions=3, duration_s=5)
    assert make_plan(seed=1, nodes=NODES, kills=0, partitions=0, duration_s=5).faults == ()


# --- the proxy -----------------------------------------------------------------------------


class Echo:
    """A TCP echo server on 127.0.0.1 that counts connections and bytes it received."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(4096):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def echo_proxy() -> AsyncIterator[tuple[Echo, ChaosProxy]]:
    echo = Echo()
    port = await echo.start()
    proxy = ChaosProxy(("a", "b"), max_connections=3)
    await proxy.start()
    proxy.targets = {"a": port, "b": port}
    try:
        yield echo, proxy
    finally:
        await proxy.close()
        await echo.close()


async def _connect(proxy: ChaosProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port("a", "b"))


async def _echoes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  data: bytes) -> bool:
    """True if ``data`` comes back; False if the connection closes instead."""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(PATIENCE_S):
            return await reader.readexactly(len(data)) == data
    except (asyncio.IncompleteReadError, OSError):
        return False


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the connection ends (EOF or reset), within a bounded wait."""
    try:
        async with asyncio.timeout(PATIENCE_S):
            return await reader.read(1) == b""
    except OSError:
        return True


async def _wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(PATIENCE_S):
        while not condition():
            await asyncio.sleep(0.01)


async def test_proxy_passes_bytes_both_ways(echo_proxy: tuple[Echo, ChaosProxy]) -> None:
    echo, proxy = echo_proxy
    reader, writer = await _connect(proxy)
    assert await _echoes(reader, writer, b"ping" * 1000)
    assert echo.received == 4000
    writer.close()


async def test_cut_stops_bytes_and_heal_restores_them(
        echo_proxy: tuple[Echo, ChaosProxy]) -> None:
    echo, proxy = echo_proxy
    reader, writer = await _connect(proxy)
    assert await _echoes(reader, writer, b"before")
    received, connections = echo.received, echo.connections

    assert proxy.cut("b", "a") == 1  # either order names the pair; the live one is aborted
    assert proxy.is_cut("a", "b")
    assert await _closed(reader)
    assert not await _echoes(reader, writer, b"after the cut")
    # A new connection during the cut is dropped before anything reaches the peer.
    reader2, writer2 = await _connect(proxy)
    assert await _closed(reader2)
    assert not await _echoes(reader2, writer2, b"during the cut")
    await asyncio.sleep(0.05)
    assert (echo.received, echo.connections) == (received, connections)

    proxy.heal("a", "b")
    reader3, writer3 = await _connect(proxy)
    assert await _echoes(reader3, writer3, b"healed")
    assert echo.received == received + len(b"healed")
    for w in (writer, writer2, writer3):
        w.close()


async def test_proxy_bounds_connections_per_link(echo_proxy: tuple[Echo, ChaosProxy]) -> None:
    _echo, proxy = echo_proxy
    held = []
    for _ in range(3):
        reader, writer = await _connect(proxy)
        assert await _echoes(reader, writer, b"x")
        held.append(writer)
    reader, writer = await _connect(proxy)
    assert await _closed(reader)
    assert proxy.live_connections() == 3
    for w in held:
        w.close()
    await _wait_until(lambda: proxy.live_connections() == 0)
    reader, writer = await _connect(proxy)
    assert await _echoes(reader, writer, b"room again")
    writer.close()


async def test_a_peer_that_is_down_looks_like_a_closed_connection(
        echo_proxy: tuple[Echo, ChaosProxy]) -> None:
    echo, proxy = echo_proxy
    await echo.close()
    reader, _writer = await _connect(proxy)
    assert await _closed(reader)
    assert proxy.stats()["a->b"].dropped == 1


# --- the accounting ------------------------------------------------------------------------

JAN, MARIE, KATRIN = Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("de-nw/kmueller")


class Run:
    """Two node databases (nl origin, be destination) and a ledger, made by the store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger: list[Sent] = []

    def db(self, nid: str) -> Path:
        return self.root / nid / "node.sqlite3"

    @property
    def databases(self) -> dict[str, Path]:
        return {nid: self.db(nid) for nid in ("nl", "be", "de-nw")}

    async def build(self) -> None:
        stores = {nid: NodeStore(self.db(nid), nid) for nid in ("nl", "be", "de-nw")}
        for nid, store in stores.items():
            self.db(nid).parent.mkdir(parents=True)
            await store.open()
        try:
            for i in range(3):  # accepted at nl, relayed into be's inbox
                env = seal_from(JAN, [MARIE], now=NOW + i, expires=NOW + HOUR_MS)
                await stores["nl"].accept(env, now=NOW, actor=JAN.id, event="envelope.accepted",
                                          local_recipients=[], remote_nodes=["be"],
                                          audit_detail=detail())
                await stores["be"].accept(env, now=NOW, actor="nl",
                                          event="envelope.delivered_to_inbox",
                                          local_recipients=[MARIE.id], remote_nodes=[],
                                          audit_detail=detail(), received=True)
                self.ledger.append(Sent(env.id, JAN.id, (MARIE.id,), "routine", None,
                                        Outcome.ACCEPTED))
            held = seal_from(JAN, [MARIE], now=NOW + 10, expires=NOW + HOUR_MS)
            await stores["nl"].accept(held, now=NOW, actor=JAN.id, event="envelope.accepted",
                                      local_recipients=[], remote_nodes=["be"],
                                      audit_detail=detail())
            await stores["be"].accept(held, now=NOW, actor="nl",
                                      event="envelope.delivered_to_inbox",
                                      local_recipients=[MARIE.id], remote_nodes=[],
                                      audit_detail=detail(), received=True)
            # The origin was killed before it answered, but it had stored it: owed.
            self.ledger.append(Sent(held.id, JAN.id, (MARIE.id,), "flash", None))
            never = seal_from(JAN, [MARIE], now=NOW + 11, expires=NOW + HOUR_MS)
            self.ledger.append(Sent(never.id, JAN.id, (MARIE.id,), "routine", None))
            refused = seal_from(JAN, [KATRIN], now=NOW + 12, expires=NOW + HOUR_MS)
            self.ledger.append(Sent(refused.id, JAN.id, (KATRIN.id,), "priority",
                                    "policy.share_with", Outcome.REFUSED, "policy.share_with"))
        finally:
            for store in stores.values():
                await store.close()

    def execute(self, nid: str, *statements: str, params: tuple[object, ...] = ()) -> None:
        with sqlite3.connect(self.db(nid)) as db:
            for sql in statements:
                db.execute(sql, params if "?" in sql else ())


@pytest.fixture
async def run(tmp_path: Path) -> Run:
    r = Run(tmp_path)
    await r.build()
    return r


async def test_a_clean_run_accounts_for_everything(run: Run) -> None:
    acc = account(run.ledger, run.databases)
    assert acc.failures() == []
    f = acc.figures()
    assert (f["submitted"], f["accepted"], f["refused"], f["unanswered"]) == (6, 3, 1, 2)
    assert f["unanswered_held"] == 1
    assert f["expected_copies"] == f["delivered_copies"] == 4
    assert (f["lost"], f["duplicated"]) == (0, 0)
    for nid, path in run.databases.items():
        assert (await verify_chain(path, nid)).ok


async def test_a_planted_duplicate_is_caught(run: Run) -> None:
    """The inbox's UNIQUE constraint makes a duplicate impossible today; rebuild the table
    without it (a schema regression) and add a second copy: the check must count it."""
    copy = run.root / "be-copy"
    shutil.copytree(run.db("be").parent, copy)
    with sqlite3.connect(copy / "node.sqlite3") as db:
        db.executescript(
            "CREATE TABLE inbox2 (seq INTEGER PRIMARY KEY AUTOINCREMENT, officer TEXT, "
            "envelope_id BLOB, relayed INTEGER, acked INTEGER);"
            "INSERT INTO inbox2 (officer, envelope_id, relayed) "
            "SELECT officer, envelope_id, relayed FROM inbox;"
            "INSERT INTO inbox2 (officer, envelope_id, relayed) "
            "SELECT officer, envelope_id, relayed FROM inbox ORDER BY seq LIMIT 1;"
            "DROP TABLE inbox; ALTER TABLE inbox2 RENAME TO inbox;")
    acc = account(run.ledger, {**run.databases, "be": copy / "node.sqlite3"})
    assert acc.figures()["duplicated"] == 1
    assert acc.figures()["lost"] == 0
    assert any("duplicated" in line for line in acc.failures())


async def test_a_copy_on_another_node_is_a_duplicate(run: Run) -> None:
    run.execute("de-nw", "INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, 0)",
                params=(MARIE.id, run.ledger[0].id))
    acc = account(run.ledger, run.databases)
    assert acc.duplicated_count == 1
    assert acc.failures()


async def test_a_missing_copy_is_lost_held_or_not(run: Run) -> None:
    run.execute("be", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.ledger[3].id,))
    acc = account(run.ledger, run.databases)
    assert acc.lost == [(acc.lost[0][0], MARIE.id)] and acc.lost_count == 1  # the held one
    assert any("lost" in line for line in acc.failures())


async def test_an_accepted_envelope_the_origin_does_not_hold_is_caught(run: Run) -> None:
    run.execute("nl", "DELETE FROM envelopes WHERE id = ?", params=(run.ledger[0].id,))
    acc = account(run.ledger, run.databases)
    assert len(acc.not_durable) == 1 and acc.failures()


async def test_refused_or_unheld_envelopes_must_be_in_no_inbox(run: Run) -> None:
    for sent in (run.ledger[4], run.ledger[5]):  # unanswered and not held; refused
        run.execute("be", "INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, 0)",
                    params=(MARIE.id, sent.id))
    acc = account(run.ledger, run.databases)
    assert len(acc.phantom) == 1 and len(acc.refused_stored) == 1
    assert len(acc.failures()) == 2


async def test_refusals_must_be_the_ones_built(run: Run) -> None:
    run.ledger[5].code = "not_found"  # refused, but not for the rule the workload built in
    run.ledger[0].expect_refusal = "policy.not_owner"  # accepted though it must be refused
    acc = account(run.ledger, run.databases)
    assert len(acc.unexpected_refusals) == 1 and len(acc.policy_violations) == 1


async def test_a_tampered_audit_chain_does_not_verify(run: Run) -> None:
    run.execute("be", "UPDATE audit SET detail = '{\"edited\":1}' WHERE seq = 2")
    chain = await verify_chain(run.db("be"), "be")
    assert not chain.ok and chain.broken_at == 2


# --- the command ---------------------------------------------------------------------------


def test_chaos_command_is_registered_and_checks_its_bounds() -> None:
    from click.testing import CliRunner

    from liaison_net.cli.main import cli

    runner = CliRunner()
    help_text = runner.invoke(cli, ["chaos", "--help"]).output
    for option in ("--kills", "--partitions", "--duration", "--seed", "--json"):
        assert option in help_text
    refused = runner.invoke(cli, ["chaos", "--kills", "3", "--duration", "10"])
    assert refused.exit_code == 2 and "no time for faults" in refused.output


# --- found by the soak ---------------------------------------------------------------------


async def test_concurrent_first_opens_of_a_database_all_succeed(tmp_path: Path) -> None:
    """Two `admin enrol-officer` at once on a node that never ran: both used to read the
    schema version before taking the write lock, the second re-ran migration 1 ("table
    envelopes already exists"), and its leaked connection thread then hung the process at
    exit. The version is now read under the lock, and a failed open closes what it opened."""
    for round_ in range(15):
        path = tmp_path / f"round{round_}" / "node.sqlite3"
        stores = [NodeStore(path, "lu") for _ in range(4)]
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(store.open() for store in stores))
        finally:
            for store in stores:
                await store.close()
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)]
