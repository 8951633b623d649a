"""Four-eyes administration (issue 19, `[admin] four_eyes`): enrolment, revocation and the
node's key rotation need two administrators, each with their own admin key. One proposes,
another approves; the same administrator twice, or one administrator alone, is refused."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from tests.integration.network import Network, audit_rows, run_cli, wait_for
from tests.integration.test_admin_socket import _has_card, _request

ENV = {"LIAISON_ADMIN_PASSPHRASE": "two people, two keys"}


def _admin_key(root: Path, name: str) -> tuple[Path, str]:
    path = root / f"{name}.adminkey"
    out = run_cli("admin", "admin-key", "init", name, "--out", str(path), env=ENV).stdout
    public = out.strip().splitlines()[-1].split('"')[1]
    assert (path.stat().st_mode & 0o777) == 0o600
    return path, public


def _admin(*args: str, check: bool = True) -> dict[str, object] | str:
    proc = run_cli("admin", *args, env=ENV, check=check)
    return json.loads(proc.stdout) if proc.returncode == 0 and "--json" in args else \
        proc.stderr


def _revoked(net: Network, nid: str, officer: str) -> bool:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return db.execute("SELECT 1 FROM revocations WHERE principal = ?",
                          (officer,)).fetchone() is not None


def test_two_administrators_enrol_revoke_and_rotate(make_network: type[Network],
                                                    tmp_path: Path) -> None:
    alice, alice_pub = _admin_key(tmp_path, "alice")
    bob, bob_pub = _admin_key(tmp_path, "bob")
    net = make_network.create(node_ids=("nl", "be"), sections={"admin": {
        "four_eyes": True, "admins": {"alice": alice_pub, "bob": bob_pub}}})
    net.start("nl")
    net.start("be")
    config = str(net.nodes["nl"].config)
    request = _request(net, "nl/avisser")

    # One administrator alone cannot enrol: refused by the node, nothing written.
    alone = run_cli("admin", "enrol-officer", request, "--config", config, check=False)
    assert alone.returncode == 2 and "four_eyes" in alone.stderr
    assert not _has_card(net, "nl", "nl/avisser")

    proposed = _admin("propose", "enrol-officer", request, "--config", config,
                      "--admin-key", str(alice), "--json")
    assert isinstance(proposed, dict) and proposed["proposer"] == "alice"
    op = str(proposed["op"])
    listed = _admin("pending", "--config", config, "--json")
    assert [r["op"] for r in listed] == [op]  # type: ignore[index, union-attr]
    # The proposer cannot be the second pair of eyes.
    same = _admin("approve", op, "--config", config, "--admin-key", str(alice), check=False)
    assert "policy.four_eyes_same_admin" in str(same)
    assert not _has_card(net, "nl", "nl/avisser")
    done = _admin("approve", op, "--config", config, "--admin-key", str(bob), "--json")
    assert isinstance(done, dict) and done["officer"] == "nl/avisser"
    assert done["approver"] == "bob"
    wait_for(lambda: _has_card(net, "be", "nl/avisser"), what="the card to federate")
    again = _admin("approve", op, "--config", config, "--admin-key", str(bob), check=False)
    assert "conflict" in str(again)  # decided once

    # Revocation, proposed by bob, approved by alice.
    proposed = _admin("propose", "revoke", "officer", "nl/avisser", "--reason", "left",
                      "--config", config, "--admin-key", str(bob), "--json")
    assert isinstance(proposed, dict)
    assert not _revoked(net, "nl", "nl/avisser")
    _admin("approve", str(proposed["op"]), "--config", config, "--admin-key", str(alice),
           "--json")
    wait_for(lambda: _revoked(net, "be", "nl/avisser"), what="the revocation to federate")

    # The node's key rotation: refused alone, done by the approver with the CA.
    alone = run_cli("admin", "rotate-key", "node", "--config", config, "--ca",
                    str(net.certs), check=False)
    assert alone.returncode == 2 and "four_eyes" in alone.stderr
    proposed = _admin("propose", "rotate-key", "--config", config, "--admin-key",
                      str(alice), "--json")
    assert isinstance(proposed, dict)
    rotated = _admin("approve", str(proposed["op"]), "--config", config, "--admin-key",
                     str(bob), "--ca", str(net.certs), "--json")
    # The approved rotation prepares the new key and its key change statement, which the
    # other national nodes co-sign before it takes effect (issue 18, admin_cosign).
    assert isinstance(rotated, dict)
    rotation = rotated["rotation"]
    assert isinstance(rotation, dict)
    assert rotation["kind"] == "rotate" and rotation["node"] == "nl"
    assert Path(str(rotation["statement"])).is_file()

    events = [r.event for r in audit_rows(net, "nl") if r.event.startswith("admin.")]
    assert events.count("admin.op_proposed") == 3
    assert events.count("admin.op_approved") == 3
    assert "admin.op_approval_refused" in events
