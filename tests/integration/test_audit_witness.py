"""The audit log as a witnessed Merkle log, with real nodes: peers cosign NL's checkpoints;
`audit verify` then catches each rewrite an operator with the database could make (cut
off the tail, delete rows and recompute the chain, change an actor and recompute), naming
the first entry that differs; an inclusion proof checks at a partner and a forged one is
refused; a node that shows two peers two different logs raises the alarm."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from liaison_net.core import checkpoint as cp
from liaison_net.core import codec, crypto, merkle
from liaison_net.core.audit import GENESIS, entry_hash
from liaison_net.federation.checkpoints import CHECKPOINT_PATH
from liaison_net.http_common import MSGPACK
from liaison_net.pki.certificates import NodePaths, node_hostname
from tests.integration.network import (
    Network,
    audit_rows,
    free_port,
    healthz,
    https,
    last_audit_seq,
    peer_tls,
    run_cli,
    wait_for,
)
from tests.integration.officers import enrol
from tests.integration.test_first_alert import directory_with

AUDIT = {"audit": {"checkpoint_every": 5, "checkpoint_seconds": 0.3}}
NODES = ("nl", "be", "lu")


def _cosigned(net: Network, nid: str, witness: str) -> int:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        row = db.execute("SELECT MAX(size) FROM cosignatures WHERE node = ? AND witness = ?",
                         (nid, witness)).fetchone()
    return int(row[0] or 0)


def _witnessed_all(net: Network, nid: str, witnesses: tuple[str, ...]) -> bool:
    """Every entry of ``nid``'s log is under a checkpoint each witness cosigned."""
    size = last_audit_seq(net, nid)
    return size > 0 and all(_cosigned(net, nid, w) >= size for w in witnesses)


def _verify(net: Network, nid: str) -> dict[str, Any]:
    out = run_cli("admin", "audit", "verify", "--config", str(net.nodes[nid].config),
                  "--json", check=False)
    report = json.loads(out.stdout)
    assert out.returncode == (0 if report["ok"] else 1)
    return dict(report)


def _rechain(db: sqlite3.Connection) -> None:
    """What an operator with the database does to hide an edit: renumber the rows and
    recompute every hash, so the chain holds again."""
    rows = db.execute("SELECT seq, at, event, envelope_id, actor, detail FROM audit_named "
                      "ORDER BY seq").fetchall()
    db.execute("DELETE FROM audit")
    prev = GENESIS
    for seq, (_, at, event, eid, actor, detail) in enumerate(rows, start=1):
        eid = bytes(eid) if eid is not None else None
        prev = entry_hash(prev, seq, at, event, eid, actor, detail)
        db.execute("INSERT INTO audit (seq, at, event, envelope_id, actor, detail, hash) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (seq, at, event, eid, actor, detail, prev))


def _nobody_first(net: Network, nid: str, peer: str) -> None:
    """``nid`` lists a URL where nothing listens before ``peer``'s own (a worker that is
    down): envelopes and checkpoints alike must fail over to the next."""
    config = tomllib.loads(net.nodes[nid].config.read_text())
    for entry in config["peers"]:
        if entry["id"] == peer:
            entry["urls"] = [f"https://127.0.0.1:{free_port()}", entry.pop("url")]
    net.nodes[nid].config.write_text(tomli_w.dumps(config), encoding="utf-8")


async def test_rewrites_are_caught_and_proofs_check_at_a_partner(
        make_network: type[Network], tmp_path: Path) -> None:
    net = make_network.create(node_ids=NODES, sections=AUDIT)
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    _nobody_first(net, "nl", "be")
    for nid in NODES:
        net.start(nid)
    async with jan.session() as nl:
        directory = await directory_with(nl, marie.id)
        sent = [jan.seal(directory, [marie.id], f"alert {i}".encode()) for i in range(30)]
        for env in sent:
            assert (await nl.submit(env.to_bytes())).status == "accepted"
    wait_for(lambda: sum(r.event == "envelope.relayed" for r in audit_rows(net, "nl")) == 30,
             what="30 relays audited at nl")
    wait_for(lambda: _witnessed_all(net, "nl", ("be", "lu")),
             what="nl's whole log witnessed by be and lu")
    report = _verify(net, "nl")
    assert report["ok"] and report["latest_witnessed"]["witnesses"] == ["be", "lu"]

    # An inclusion proof of one envelope's entries checks at BE, against BE's own view.
    proof_file = tmp_path / "proof.json"
    env_id = sent[7].header.id_text
    run_cli("admin", "audit", "prove", env_id, "--config", str(net.nodes["nl"].config),
            "--witness", "be", "--out", str(proof_file))
    checked = json.loads(run_cli("admin", "audit", "check-proof", str(proof_file), "--config",
                                 str(net.nodes["be"].config), "--json").stdout)
    assert checked["ok"] and {e["event"] for e in checked["entries"]} >= {
        "envelope.accepted", "envelope.relayed"}
    # Forged: an entry's actor changed (and its hash recomputed), or a proof hash changed.
    proof = json.loads(proof_file.read_text())
    for forge in ("actor", "path"):
        forged = json.loads(json.dumps(proof))
        entry = forged["entries"][0]
        if forge == "actor":
            entry["actor"] = "nl/someone-else"
            entry["hash"] = entry_hash(bytes.fromhex(entry["prev"]), entry["seq"], entry["at"],
                                       entry["event"], sent[7].id, entry["actor"],
                                       entry["detail"]).hex()
        else:
            entry["proof"][0] = "00" * 32
        forged_file = tmp_path / f"forged-{forge}.json"
        forged_file.write_text(json.dumps(forged))
        refused = run_cli("admin", "audit", "check-proof", str(forged_file), "--config",
                          str(net.nodes["be"].config), "--json", check=False)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["ok"] is False

    # The operator's rewrites, each on a copy of NL's database, NL stopped.
    net.kill("nl", signal.SIGTERM)
    database = net.database("nl")
    pristine = tmp_path / "nl-pristine.sqlite3"
    shutil.copy2(database, pristine)
    size = _cosigned(net, "nl", "be")  # what BE witnessed: the rewrites are measured to it
    with contextlib.closing(sqlite3.connect(pristine)) as db:
        relayed = [r[0] for r in db.execute("SELECT seq FROM audit_named WHERE event = "
                                            "'envelope.relayed' ORDER BY seq")]
        accepted = [r[0] for r in db.execute("SELECT seq FROM audit_named WHERE event = "
                                             "'envelope.accepted' ORDER BY seq")]

    def rewrite(sql: list[tuple[str, tuple[Any, ...]]], rechain: bool) -> dict[str, Any]:
        shutil.copy2(pristine, database)
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            for statement, params in sql:
                db.execute(statement, params)
            if rechain:
                _rechain(db)
        return _verify(net, "nl")

    # 1. Cut off the last 40 entries: the chain holds, the log is shorter than witnessed.
    cut = rewrite([("DELETE FROM audit WHERE seq > ?", (size - 40,))], rechain=False)
    assert cut["broken_at"] is None and not cut["ok"]
    assert cut["differs"]["first_entry"] == size - 39 and cut["differs"]["truncated"]
    # 2. Delete some relay rows and recompute the chain.
    gone = relayed[5:15]
    deleted = rewrite([("DELETE FROM audit WHERE seq = ?", (s,)) for s in gone], rechain=True)
    assert deleted["broken_at"] is None and not deleted["ok"]
    assert deleted["differs"]["first_entry"] == gone[0] and deleted["differs"]["exact"]
    # 3. Change who an entry names and recompute the chain.
    edited_seq = accepted[12]
    edited = rewrite([("UPDATE audit SET actor = 'nl/someone-else' WHERE seq = ?",
                       (edited_seq,))], rechain=True)
    assert edited["broken_at"] is None and not edited["ok"]
    assert edited["differs"]["first_entry"] == edited_seq
    # The kept subtree roots (under the witnessed root) place it in at most 64 entries.
    first, last = edited["differs"]["kept_range"]
    assert first <= edited_seq <= last and last - first < 64
    assert edited["differs"]["named_by_mark"]  # the name itself is under no signature
    # 4. Truncate after a checkpoint, then append entries anew: the same size again.
    regrown = rewrite([("DELETE FROM audit WHERE seq > ?", (size - 10,)),
                       *[("INSERT INTO audit (seq, at, event, envelope_id, actor, detail, hash) "
                          "VALUES (?, 0, 'envelope.accepted', NULL, 'nl/x', '{}', x'00')",
                          (size - 10 + i,)) for i in range(1, 11)]], rechain=True)
    assert not regrown["ok"] and regrown["differs"]["first_entry"] == size - 9
    # The text names it too.
    shown = run_cli("admin", "audit", "verify", "--config", str(net.nodes["nl"].config),
                    check=False)
    assert shown.returncode == 1 and f"entry {size - 9} differs" in shown.stdout
    # 5. What was kept beside the checkpoints rewritten too, as cells of another type:
    # verify still answers (no traceback), with the range only.
    junk = rewrite([("UPDATE audit SET actor = 'nl/someone-else' WHERE seq = ?",
                     (edited_seq,)),
                    ("UPDATE checkpoints SET kept = 'junk', leaves = 7 WHERE node = 'nl'", ())],
                   rechain=True)
    assert not junk["ok"] and not junk["differs"]["exact"]
    assert junk["differs"]["kept_range"] is None and not junk["differs"]["named_by_mark"]
    # And the untouched log still verifies.
    assert rewrite([], rechain=False)["ok"]


async def test_two_logs_shown_to_two_peers_raise_the_alarm(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=NODES, sections=AUDIT)
    for officer in ("nl/jdevries", "be/mpeeters", "lu/schmit"):
        enrol(net, officer)  # a card issued: an entry in each node's log
    for nid in NODES:
        net.start(nid)
    wait_for(lambda: all(_witnessed_all(net, nid, tuple(set(NODES) - {nid})) for nid in NODES),
             what="each node's log witnessed by the two others")
    net.kill("nl", signal.SIGKILL)
    # NL's operator, with NL's keys, extends its log two ways and shows BE one, LU the other.
    with contextlib.closing(sqlite3.connect(net.database("nl"), timeout=10)) as db:
        leaves = [merkle.leaf_hash(bytes(h)) for (h,) in
                  db.execute("SELECT hash FROM audit ORDER BY seq")]
    key = crypto.signing_key_from_seed(NodePaths.under(net.certs / "nl", "nl")
                                       .signing_key.read_bytes())
    old = len(leaves)
    fork_be = leaves + [merkle.leaf_hash(b"be-%d" % i) for i in range(3)]
    fork_lu = leaves + [merkle.leaf_hash(b"lu-%d" % i) for i in range(3)]

    async def post(witness: str, body: bytes) -> tuple[int, bytes]:
        return await https(net.nodes[witness].federation_port, peer_tls(net, "nl"),
                           node_hostname(witness), "POST", CHECKPOINT_PATH, data=body,
                           headers={"Content-Type": MSGPACK})

    async def show(witness: str, fork: list[bytes], proof_from: int = old,
                   proof_tree: list[bytes] | None = None) -> dict[str, Any]:
        signed = cp.sign_checkpoint(cp.Checkpoint("nl", len(fork), merkle.root(fork),
                                                  _now_ms()), key)
        proofs = [[proof_from, merkle.consistency_proof(proof_from, proof_tree or fork)]] if (
            proof_from < len(fork)) else []
        body = {"origin": "nl", "checkpoint": signed.raw, "proofs": proofs, "seen": []}
        status, answer = await post(witness, codec.pack(body))
        assert status == 200, answer[:200]
        return dict(codec.unpack(answer, what="answer", max_bytes=4096))

    # Hostile requests are refused with a typed error and store nothing.
    rows_before = _checkpoint_rows(net, "be")
    be_key = crypto.signing_key_from_seed(NodePaths.under(net.certs / "be", "be")
                                          .signing_key.read_bytes())
    not_nl = cp.sign_checkpoint(cp.Checkpoint("nl", old + 1, merkle.root(leaves), 0), be_key)
    for body, code in (
            (b"\xc1 not msgpack", "malformed"),
            (codec.pack({"origin": "nl", "checkpoint": not_nl.raw, "proofs": [],
                         "seen": []}), "bad_signature"),
            (codec.pack({"origin": "lu", "checkpoint": not_nl.raw, "proofs": [],
                         "seen": []}), "forbidden"),
            (codec.pack({"origin": "nl", "checkpoint": not_nl.raw,
                         "proofs": [[1, [b"\x00" * 32] * 65]], "seen": []}), "malformed"),
            (codec.pack({"origin": "nl", "checkpoint": not_nl.raw,
                         "proofs": [[i, []] for i in range(1, 19)], "seen": []}),
             "limit_exceeded"),
            (codec.pack({"origin": "nl", "checkpoint": not_nl.raw, "proofs": [],
                         "seen": [not_nl.raw] * 17}), "limit_exceeded")):
        status, answer = await post("be", body)
        assert 400 <= status < 500 and json.loads(answer)["error"] == code, (status, answer)
    assert _checkpoint_rows(net, "be") == rows_before

    # Each fork alone is consistent with what that witness saw: BE cosigns its fork. LU
    # cosigns the other, unless BE's own offer to LU (every 0.3 s here) has told LU of
    # BE's fork first: then LU sees the split view at once.
    assert (await show("be", fork_be))["status"] == "witnessed"
    to_lu = await show("lu", fork_lu)
    assert to_lu["status"] == "witnessed" or to_lu == {"status": "alarm",
                                                       "verdict": "split_view"}, to_lu
    # BE and LU compare notes in their own offers to each other: the alarm is raised.
    def alarmed(nid: str) -> bool:
        return any(a["node"] == "nl" and a["verdict"] == "split_view"
                   for a in healthz(net, nid)["audit_alarms"])

    wait_for(lambda: alarmed("be") or alarmed("lu"), what="a split-view alarm about nl")
    for nid in ("be", "lu"):
        if alarmed(nid):
            rows = [r for r in audit_rows(net, nid) if r.event == "audit.checkpoint_alarm"]
            assert rows and rows[0].actor == "nl" and rows[0].detail["verdict"] == "split_view"
    # Shown to one witness twice, the second fork is refused at once; so are a log that
    # went back (a size below the latest BE holds, never shown to it before), and one grown
    # from the other fork, which no proof connects to BE's view.
    assert await show("be", fork_lu) == {"status": "alarm", "verdict": "split_view"}
    assert await show("be", fork_be[:old + 1], proof_from=old + 1) == {
        "status": "alarm", "verdict": "rollback"}
    grown = [*fork_lu, merkle.leaf_hash(b"more")]
    assert await show("be", grown, proof_from=len(fork_be)) == {
        "status": "alarm", "verdict": "inconsistent"}
    # A witness that is not shown a proof asks for one, from the size it holds.
    assert await show("be", [*fork_be, merkle.leaf_hash(b"x")], proof_from=old) == {
        "status": "need_proof", "from": [len(fork_be)]}
    verdicts = {(r.detail["verdict"], r.detail["size"]) for r in audit_rows(net, "be")
                if r.event == "audit.checkpoint_alarm"}
    assert {("split_view", len(fork_be)), ("rollback", old + 1),
            ("inconsistent", len(grown))} <= verdicts


def _checkpoint_rows(net: Network, nid: str, of: str = "nl") -> tuple[int, int]:
    """Checkpoints of ``of``'s log held at ``nid``, and cosignatures of them."""
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        checkpoints, cosignatures = (
            int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE node = ?", (of,)).fetchone()[0])
            for table in ("checkpoints", "cosignatures"))
    return checkpoints, cosignatures


def _now_ms() -> int:
    return int(time.time() * 1000)
