"""The chaos soak's parts that need no node: the plan, the proxy, the accounting.

The accounting tests plant each fault the soak exists to catch (a duplicate, a loss, a
refused envelope that got stored, a broken audit chain, an effect missing or twice) in
real node databases built with the store's own code, so a check that cannot fail would
fail here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from liaison_net.chaos.check import Accounting, Outcome, Sent, account, verify_chain
from liaison_net.chaos.plan import Action, Shape, make_plan
from liaison_net.chaos.proxy import ChaosProxy
from liaison_net.core import codec, crypto, sealing
from liaison_net.core.audit import detail
from liaison_net.core.envelope import Envelope, Kind, Precedence, Urgency
from liaison_net.core.evidence import Step, make, sign_statement
from liaison_net.core.evidence_batch import sign_batch
from liaison_net.core.ids import node_principal
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.store.node_store import NodeStore
from liaison_net.store.schema import SCHEMA_VERSION
from tests.core.factories import NOW, Officer, make_tag, seal_from
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


NODE_KEYS = {nid: crypto.generate_signing_key() for nid in ("nl", "be", "de-nw")}


class Run:
    """Three node databases (nl origin, be and de-nw destinations) and a ledger, made by
    the store: alerts, a request, a consented forward, each with the effects it owes
    (evidence, due times, a disclosure receipt) where the nodes would put them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger: list[Sent] = []
        self.effects: dict[tuple[str, bytes, str], bytes] = {}  # effect -> its envelope id
        self.stores: dict[str, NodeStore] = {}
        self.envelopes: dict[bytes, Envelope] = {}

    def db(self, nid: str) -> Path:
        return self.root / nid / "node.sqlite3"

    @property
    def databases(self) -> dict[str, Path]:
        return {nid: self.db(nid) for nid in ("nl", "be", "de-nw")}

    @property
    def keys(self) -> dict[str, list[crypto.EncryptionKeyPair]]:
        return {o.id: [o.encryption] for o in (JAN, MARIE, KATRIN)}

    def account(self) -> Accounting:
        return account(self.ledger, self.databases, self.keys)

    async def relay(self, env: Envelope, origin: str, to: dict[str, list[str]],
                    sent: Sent) -> None:
        """Accepted at ``origin``, then into each recipient's inbox on its node, with the
        evidence the witnesses issue: accepted by the origin, relayed per recipient."""
        await self.stores[origin].accept(
            env, now=NOW, actor=sent.sender, event="envelope.accepted",
            local_recipients=to.get(origin, []), remote_nodes=sorted(set(to) - {origin}),
            audit_detail=detail())
        for nid, officers in to.items():
            if nid != origin:
                await self.stores[nid].accept(
                    env, now=NOW, actor=origin, event="envelope.delivered_to_inbox",
                    local_recipients=officers, remote_nodes=[], audit_detail=detail(),
                    received=True)
        if env.header.urgency is not None:
            await self.stores[origin].requests.track(env, officers=[sent.sender],
                                                     role="outgoing", now=NOW)
            for nid, officers in to.items():
                await self.stores[nid].requests.track(env, officers=officers, role="incoming",
                                                      now=NOW)
        self.ledger.append(sent)
        self.envelopes[env.id] = env
        await self.evidence(env, Step.ACCEPTED, origin)
        for nid, officers in to.items():
            for officer in officers:
                await self.evidence(env, Step.RELAYED, nid, recipient=officer)

    async def evidence(self, env: Envelope, step: Step, by: str, *,
                       recipient: str | None = None, at: str | None = None) -> bytes:
        statement = make(step, env.header, at=NOW, recipient=recipient)
        return await self.issue(Kind.EVIDENCE, by, env.header.sender, env.id,
                                sign_statement(statement, NODE_KEYS[by]),
                                (step.value, env.id, recipient or by), at=at)

    async def notice(self, by: str, to: str, ref: bytes, content: dict[str, object],
                     effect: tuple[str, bytes, str]) -> bytes:
        return await self.issue(Kind.NOTICE, by, to, ref, codec.pack({"v": 1, **content}),
                                effect)

    async def issue(self, kind: Kind, by: str, to: str, ref: bytes, plaintext: bytes,
                    effect: tuple[str, bytes, str],
                    key: crypto.SigningKeyPair | None = None, at: str | None = None) -> bytes:
        """An envelope signed by ``by``'s node key and sealed for ``to``, in their inbox on
        their home node (as the notifier and federation put it there), or on ``at``."""
        officer = next(o for o in (JAN, MARIE, KATRIN) if o.id == to)
        home = at or to.split("/")[0]
        notice = sealing.seal(
            sender=node_principal(by), sender_key=key or NODE_KEYS[by],
            recipients=[officer.recipient],
            tag=make_tag(share_with=frozenset({"nl", "be", "de-nw"})), plaintext=plaintext,
            now=NOW, expires=NOW + 30 * DAY_MS, kind=kind, precedence=Precedence.ROUTINE,
            ref=ref)
        await self.stores[home].accept(notice, now=NOW, actor=by, event=f"{kind.value}.issued",
                                       local_recipients=[to], remote_nodes=[],
                                       audit_detail=detail(), received=by != home)
        self.effects[effect] = notice.id
        return notice.id

    async def build(self) -> None:
        for nid in self.stores or ("nl", "be", "de-nw"):
            self.db(nid).parent.mkdir(parents=True)
        async with self.planting():
            for nid, key in NODE_KEYS.items():  # each node holds its peers' signing keys
                for other in self.stores:
                    if other != nid:
                        await self.stores[other].put_node_key(nid, b"cert", key.public)
            for i in range(3):  # accepted at nl, relayed into be's inbox
                env = seal_from(JAN, [MARIE], now=NOW + i, expires=NOW + HOUR_MS)
                await self.relay(env, "nl", {"be": [MARIE.id]},
                                 Sent(env.id, JAN.id, (MARIE.id,), "routine", None,
                                      Outcome.ACCEPTED))
            held = seal_from(JAN, [MARIE], now=NOW + 10, expires=NOW + HOUR_MS)
            # The origin was killed before it answered, but it had stored it: owed.
            await self.relay(held, "nl", {"be": [MARIE.id]},
                             Sent(held.id, JAN.id, (MARIE.id,), "flash", None))
            never = seal_from(JAN, [MARIE], now=NOW + 11, expires=NOW + HOUR_MS)
            self.ledger.append(Sent(never.id, JAN.id, (MARIE.id,), "routine", None))
            refused = seal_from(JAN, [KATRIN], now=NOW + 12, expires=NOW + HOUR_MS)
            self.ledger.append(Sent(refused.id, JAN.id, (KATRIN.id,), "priority",
                                    "policy.share_with", Outcome.REFUSED, "policy.share_with"))
            request = seal_from(JAN, [MARIE], now=NOW + 13, expires=NOW + HOUR_MS,
                                kind=Kind.REQUEST, urgency=Urgency.OTHER)
            await self.relay(request, "nl", {"be": [MARIE.id]},
                             Sent(request.id, JAN.id, (MARIE.id,), "routine", None,
                                  Outcome.ACCEPTED, request=True))
            # Marie forwards the first alert to Katrin with Jan's consent: de-nw owes Jan
            # a disclosure receipt.
            original = self.ledger[0].id
            fwd = seal_from(MARIE, [KATRIN], now=NOW + 14, expires=NOW + HOUR_MS,
                            ref=original)
            await self.relay(fwd, "be", {"de-nw": [KATRIN.id]},
                             Sent(fwd.id, MARIE.id, (KATRIN.id,), "routine", None,
                                  Outcome.ACCEPTED, forward_of=original,
                                  consent_owner=JAN.id))
            await self.notice("de-nw", JAN.id, original,
                              {"type": "disclosure", "original": original, "forward": fwd.id,
                               "node": "de-nw"}, ("disclosure", fwd.id, "de-nw"))

    def execute(self, nid: str, *statements: str, params: tuple[object, ...] = ()) -> None:
        with sqlite3.connect(self.db(nid)) as db:
            for sql in statements:
                db.execute(sql, params if "?" in sql else ())

    @contextlib.asynccontextmanager
    async def planting(self) -> AsyncIterator[None]:
        """The stores open again, to plant more with the store's own code."""
        self.stores = {nid: NodeStore(self.db(nid), nid) for nid in ("nl", "be", "de-nw")}
        for store in self.stores.values():
            await store.open()
        try:
            yield
        finally:
            for store in self.stores.values():
                await store.close()


@pytest.fixture
async def run(tmp_path: Path) -> Run:
    r = Run(tmp_path)
    await r.build()
    return r


async def test_a_clean_run_accounts_for_everything(run: Run) -> None:
    acc = run.account()
    assert acc.failures() == []
    f = acc.figures()
    assert (f["submitted"], f["accepted"], f["refused"], f["unanswered"]) == (8, 5, 1, 2)
    assert f["unanswered_held"] == 1
    assert f["expected_copies"] == f["delivered_copies"] == 6
    assert (f["lost"], f["duplicated"]) == (0, 0)
    # 6 owed envelopes: accepted and relayed evidence each, 2 due times for the request,
    # 1 receipt for the consented forward; each found exactly once.
    assert f["effects_owed"] == f["effects_found"] == 15
    assert {k: n["owed"] for k, n in f["effects_by_kind"].items()} == {
        "accepted": 6, "relayed": 6, "non-delivery": 0, "due": 2, "disclosure": 1}
    assert (f["effects_missing"], f["effects_twice"], f["effects_unowed"],
            f["effects_unreadable"]) == (0, 0, 0, 0)
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
    acc = account(run.ledger, {**run.databases, "be": copy / "node.sqlite3"}, run.keys)
    assert acc.figures()["duplicated"] == 1
    assert acc.figures()["lost"] == 0
    assert any("duplicated" in line for line in acc.failures())


async def test_a_copy_on_another_node_is_a_duplicate(run: Run) -> None:
    run.execute("de-nw", "INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, 0)",
                params=(MARIE.id, run.ledger[0].id))
    acc = run.account()
    assert acc.duplicated_count == 1
    assert acc.failures()


async def test_a_missing_copy_is_lost_held_or_not(run: Run) -> None:
    run.execute("be", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.ledger[3].id,))
    acc = run.account()
    assert acc.lost == [(acc.lost[0][0], MARIE.id)] and acc.lost_count == 1  # the held one
    assert any("lost" in line for line in acc.failures())


async def test_an_accepted_envelope_the_origin_does_not_hold_is_caught(run: Run) -> None:
    run.execute("nl", "DELETE FROM envelopes WHERE id = ?", params=(run.ledger[0].id,))
    acc = run.account()
    assert len(acc.not_durable) == 1 and acc.failures()


async def test_refused_or_unheld_envelopes_must_be_in_no_inbox(run: Run) -> None:
    for sent in (run.ledger[4], run.ledger[5]):  # unanswered and not held; refused
        run.execute("be", "INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, 0)",
                    params=(MARIE.id, sent.id))
    acc = run.account()
    assert len(acc.phantom) == 1 and len(acc.refused_stored) == 1
    assert len(acc.failures()) == 2


async def test_refusals_must_be_the_ones_built(run: Run) -> None:
    run.ledger[5].code = "not_found"  # refused, but not for the rule the workload built in
    run.ledger[0].expect_refusal = "policy.not_owner"  # accepted though it must be refused
    acc = run.account()
    assert len(acc.unexpected_refusals) == 1 and len(acc.policy_violations) == 1


async def test_a_removed_evidence_is_missing(run: Run) -> None:
    """A kill between the acceptance and its evidence: the sender never gets it."""
    effect = ("accepted", run.ledger[0].id, "nl")
    run.execute("nl", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.effects[effect],))
    acc = run.account()
    assert acc.effects.missing == [effect] and acc.figures()["effects_missing"] == 1
    assert any("effects missing" in line for line in acc.failures())
    assert acc.examples()["effects_missing"][0][0] == "accepted"


async def test_evidence_is_counted_only_in_the_senders_inbox(run: Run) -> None:
    """Evidence left on the destination (never relayed back) is not at the sender."""
    env = run.envelopes[run.ledger[1].id]
    effect = ("relayed", env.id, MARIE.id)
    run.execute("nl", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.effects[effect],))
    async with run.planting():
        await run.evidence(env, Step.RELAYED, "be", recipient=MARIE.id, at="be")
    assert run.account().effects.missing == [effect]


async def test_a_doubled_evidence_is_counted_twice(run: Run) -> None:
    """A retry after a kill issues a second statement (a new envelope): twice."""
    env = run.envelopes[run.ledger[1].id]
    async with run.planting():
        await run.evidence(env, Step.RELAYED, "be", recipient=MARIE.id)
    acc = run.account()
    assert acc.effects.twice == [(("relayed", env.id, MARIE.id), 1)]
    assert acc.figures()["effects_twice"] == 1 and acc.figures()["effects_missing"] == 0
    assert any("more than once" in line for line in acc.failures())


async def test_evidence_by_a_node_that_may_not_attest_it_does_not_count(run: Run) -> None:
    """"relayed" for Marie signed by nl (not her node): refused, and be's is missing."""
    env = run.envelopes[run.ledger[2].id]
    effect = ("relayed", env.id, MARIE.id)
    run.execute("nl", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.effects[effect],))
    async with run.planting():
        statement = make(Step.RELAYED, env.header, at=NOW, recipient=MARIE.id)
        forged = dataclasses.replace(statement, by=node_principal("nl"))
        await run.issue(Kind.EVIDENCE, "nl", JAN.id, env.id,
                        sign_statement(forged, NODE_KEYS["nl"]), ("forged", env.id, ""))
    acc = run.account()
    assert acc.effects.missing == [effect] and len(acc.effects.unreadable) == 1


async def test_evidence_no_node_signed_does_not_count(run: Run) -> None:
    """A statement under a key no peer holds for be/node: unreadable, not found."""
    env = run.envelopes[run.ledger[2].id]
    effect = ("relayed", env.id, MARIE.id)
    run.execute("nl", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.effects[effect],))
    rogue = crypto.generate_signing_key()
    async with run.planting():
        statement = make(Step.RELAYED, env.header, at=NOW, recipient=MARIE.id)
        await run.issue(Kind.EVIDENCE, "be", JAN.id, env.id, sign_statement(statement, rogue),
                        ("rogue", env.id, ""), key=rogue)
    effects = run.account().effects
    assert effects.missing == [effect] and len(effects.unreadable) == 1
    assert any("do not verify" in line for line in effects.failures())


async def test_a_missing_non_delivery_notice_is_caught(run: Run) -> None:
    """A hop that expired owes the sender a notice, and no "relayed" evidence."""
    env = seal_from(JAN, [KATRIN], now=NOW + 20, expires=NOW + HOUR_MS,
                    tag=make_tag(share_with=frozenset({"nl", "be", "de-nw"})))
    async with run.planting():
        await run.stores["nl"].accept(env, now=NOW, actor=JAN.id, event="envelope.accepted",
                                      local_recipients=[], remote_nodes=["de-nw"],
                                      audit_detail=detail())
        await run.evidence(env, Step.ACCEPTED, "nl")
    run.ledger.append(Sent(env.id, JAN.id, (KATRIN.id,), "routine", None, Outcome.ACCEPTED))
    run.execute("nl", "UPDATE hops SET state = 'expired' WHERE envelope_id = ?",
                params=(env.id,))
    effect = ("non-delivery", env.id, "de-nw")
    assert run.account().effects.missing == [effect]
    async with run.planting():
        await run.notice("nl", JAN.id, env.id, {"type": "non-delivery", "envelope": env.id,
                                                "node": "de-nw", "reason": "expired"}, effect)
    effects = run.account().effects
    assert effects.failures() == [] and effects.found["non-delivery"] == 1


async def test_a_missing_due_time_is_caught(run: Run) -> None:
    request = run.ledger[6]
    run.execute("be", "DELETE FROM requests WHERE envelope_id = ?", params=(request.id,))
    acc = run.account()
    assert acc.effects.missing == [("due", request.id, MARIE.id)]
    assert acc.figures()["effects_by_kind"]["due"]["missing"] == 1


async def test_a_due_time_on_the_wrong_node_is_unowed(run: Run) -> None:
    request = run.ledger[6]
    run.execute("be", "UPDATE requests SET role = 'outgoing' WHERE envelope_id = ?",
                params=(request.id,))
    effects = run.account().effects
    assert effects.missing == [("due", request.id, MARIE.id)] and len(effects.unowed) == 1


async def test_a_missing_disclosure_receipt_is_caught(run: Run) -> None:
    forward = run.ledger[7]
    effect = ("disclosure", forward.id, "de-nw")
    run.execute("nl", "DELETE FROM inbox WHERE envelope_id = ?", params=(run.effects[effect],))
    acc = run.account()
    assert acc.effects.missing == [effect]
    assert any("effects missing" in line for line in acc.failures())


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


async def test_a_batch_statement_counts_once_for_each_envelope_it_covers(run: Run) -> None:
    """One "accepted" batch (core/evidence_batch.py) in place of two single statements: each
    covered envelope has its accepted once; a second batch covering one makes it twice."""
    ids = [run.ledger[0].id, run.ledger[1].id]
    for eid in ids:
        run.execute("nl", "DELETE FROM inbox WHERE envelope_id = ?",
                    params=(run.effects[("accepted", eid, "nl")],))
    assert len(run.account().effects.missing) == 2

    def batch(covered: list[bytes]) -> bytes:
        return sign_batch([make(Step.ACCEPTED, run.envelopes[e].header, at=NOW)
                           for e in covered], NODE_KEYS["nl"], at=NOW)

    async with run.planting():
        await run.issue(Kind.EVIDENCE, "nl", JAN.id, ids[1], batch(ids), ("batch", ids[1], "nl"))
    acc = run.account()
    assert (acc.effects.missing, acc.effects.twice, acc.effects.unreadable) == ([], [], [])
    async with run.planting():
        await run.issue(Kind.EVIDENCE, "nl", JAN.id, ids[0], batch(ids[:1]),
                        ("batch", ids[0], "nl"))
    assert run.account().effects.twice == [(("accepted", ids[0], "nl"), 1)]
