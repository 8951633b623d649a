"""`liaison admin` writes through the running node (one writer), over a 0600 unix socket
beside its database; with no node running it writes to the node's store itself, and the
node federates the result when it starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat

from liaison_net.client import keystore as ks
from liaison_net.core.almanac import Almanac
from tests.integration.network import Network, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, enrol


def _request(net: Network, officer_id: str) -> str:
    """An enrolment request file for ``officer_id``, as `liaison officer init` makes it."""
    node = net.nodes[officer_id.split("/")[0]]
    path = net.root / "officers" / f"{officer_id.replace('/', '-')}.keystore"
    path.parent.mkdir(exist_ok=True)
    _keystore, request = ks.create(path, officer_id, "Officer", "liaison officer",
                                   node.client_url, net.ca_cert.read_bytes(), PASSPHRASE,
                                   almanac=Almanac.create(languages=(), posting="",
                                                          coverage=()))
    request_path = path.with_suffix(".request")
    request_path.write_bytes(request)
    return str(request_path)


def _has_card(net: Network, nid: str, officer: str) -> bool:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        return db.execute("SELECT 1 FROM directory WHERE officer = ?",
                          (officer,)).fetchone() is not None


def _socket(net: Network, nid: str) -> str:
    return str(net.database(nid).parent / "admin.sock")


def test_admin_writes_go_through_the_running_node(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    enrol(net, "nl/jdevries")
    net.start("nl")
    net.start("be")
    config = str(net.nodes["nl"].config)
    mode = stat.S_IMODE(os.stat(_socket(net, "nl")).st_mode)
    assert mode == 0o600, oct(mode)

    out = json.loads(run_cli("admin", "enrol-officer", _request(net, "nl/avisser"),
                             "--config", config, "--json").stdout)
    assert out["officer"] == "nl/avisser" and out["written_by"] == "node"
    wait_for(lambda: _has_card(net, "be", "nl/avisser"), timeout=30,
             what="the card enrolled through the node to reach be")

    revoked = json.loads(run_cli("admin", "revoke", "officer", "nl/avisser", "--reason",
                                 "left the service", "--config", config, "--json").stdout)
    assert revoked["written_by"] == "node" and revoked["pushed_to"] == ["be"]

    # The node's refusals come back typed through the socket and change nothing.
    missing = run_cli("admin", "revoke", "officer", "nl/nobody", "--reason", "x",
                      "--config", config, check=False)
    assert missing.returncode == 2 and "not in the directory" in missing.stderr
    foreign = run_cli("admin", "revoke", "officer", "be/mpeeters", "--reason", "x",
                      "--config", config, check=False)
    assert foreign.returncode == 2 and "forbidden" in foreign.stderr
    again = run_cli("admin", "revoke", "officer", "nl/avisser", "--reason", "x",
                    "--config", config, check=False)
    assert again.returncode == 2 and "already revoked" in again.stderr

    listed = json.loads(run_cli("admin", "revocations", "--config", config, "--json").stdout)
    assert [r["principal"] for r in listed] == ["nl/avisser"]
    run_cli("admin", "audit", "verify", "--config", config)


def test_with_the_node_down_the_cli_writes_to_the_store(make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    net.start("nl")
    net.start("be")
    config = str(net.nodes["nl"].config)
    # Killed: its socket file stays behind, and nothing answers on it.
    net.kill("nl", signal.SIGKILL)
    assert os.path.exists(_socket(net, "nl"))
    text = run_cli("admin", "enrol-officer", _request(net, "nl/avisser"),
                   "--config", config).stdout
    assert "is not running" in text
    assert _has_card(net, "nl", "nl/avisser")
    net.start("nl")
    wait_for(lambda: _has_card(net, "be", "nl/avisser"), timeout=30,
             what="the card written while nl was down to federate once it runs")
    run_cli("admin", "audit", "verify", "--config", config)
