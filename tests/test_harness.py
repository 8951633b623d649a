"""The drills' node-process harness (liaison_net/drills/harness.py): configs the node reads
back as written, waits that fail at once when the process dies, stops that end by SIGKILL."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from liaison_net import config
from liaison_net.drills.harness import (
    Deadline,
    HarnessError,
    HarnessTimeout,
    NodeProcess,
    NodeSet,
    free_ports,
    stop_processes,
    write_node_config,
)

#: A process that ignores SIGTERM and says so on stdout once it does.
STUBBORN = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "while True:\n    time.sleep(1)\n")


def test_config_is_read_back_by_the_node_as_written(tmp_path: Path) -> None:
    path = tmp_path / "configs" / "nl.toml"
    written = write_node_config(
        path, "nl", federation_port=7401, client_port=7501,
        peers={"be": "https://127.0.0.1:7402", "lu": "https://127.0.0.1:7403"},
        sections={"delivery": {"backoff_initial_s": 0.2, "batch_size": 2},
                  "store": {"retention_sweep_s": 0.5}},
        comment="Test node nl\nsecond line")
    text = path.read_text()
    assert text.startswith("# Test node nl\n# second line\n")
    assert written["delivery"] == {"backoff_initial_s": 0.2, "batch_size": 2}
    loaded = config.load(path)
    assert (loaded.id, loaded.federation.port, loaded.client.port) == ("nl", 7401, 7501)
    assert {(p.id, p.url) for p in loaded.peers} == {("be", "https://127.0.0.1:7402"),
                                                     ("lu", "https://127.0.0.1:7403")}
    assert loaded.data_dir.resolve() == (tmp_path / "data" / "nl").resolve()
    assert loaded.cert_dir.resolve() == (tmp_path / "certs" / "nl").resolve()
    assert loaded.delivery.backoff.initial_s == 0.2 and loaded.delivery.batch_size == 2
    assert loaded.store.retention_sweep_s == 0.5


def test_every_node_gets_every_other_as_a_peer_with_overrides(tmp_path: Path) -> None:
    nodes = NodeSet(tmp_path)
    nodes.lay_out(("nl", "be", "lu"))
    nodes.write_configs(peer_urls={("nl", "be"): "https://127.0.0.1:9"},
                        comment="node {node}")
    nl = config.load(nodes.nodes["nl"].config)
    assert {p.id: p.url for p in nl.peers} == {
        "be": "https://127.0.0.1:9", "lu": nodes.nodes["lu"].federation_url}
    assert nodes.nodes["lu"].config.read_text().startswith("# node lu\n")
    ports = [p for n in nodes.nodes.values() for p in (n.federation_port, n.client_port)]
    assert len(set(ports)) == 6


def test_waiting_for_a_node_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    """No config file: `node serve` exits; the wait says so instead of running out."""
    node = NodeProcess("nl", tmp_path / "configs" / "nl.toml", 1, 2, tmp_path / "nl.log")
    node.start()
    deadline = Deadline(30)
    with pytest.raises(HarnessError, match=r"node nl exited with code [1-9]") as caught:
        node.wait_ready(deadline)
    assert not isinstance(caught.value, HarnessTimeout)
    assert "cannot read config" in str(caught.value)  # the log's tail
    assert not node.running()


#: A process that listens on the ports it is given (0: any), then prints them.
LISTENER = ("import socket, sys, time\n"
            "socks = [socket.create_server(('127.0.0.1', int(p))) for p in sys.argv[1:]]\n"
            "print(*[s.getsockname()[1] for s in socks], flush=True)\n"
            "time.sleep(60)\n")


def test_a_port_another_process_listens_on_is_not_the_node_listening(tmp_path: Path) -> None:
    """A restarted node whose port another process took meanwhile cannot bind it and
    exits, while a connect to the port succeeds: the wait must not call that node ready
    (the bench's outage once counted 0 of 10,000 so). Ready only with its own listeners."""
    squatter = subprocess.Popen([sys.executable, "-c", LISTENER, "0", "0"],
                                stdout=subprocess.PIPE)
    ours = None
    try:
        assert squatter.stdout is not None
        taken = [int(p) for p in squatter.stdout.readline().split()]
        node = NodeProcess("nl", tmp_path / "nl.toml", taken[0], taken[1], tmp_path / "nl.log")
        node.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        assert not node.listening()  # the ports accept, but not this process's
        node.proc.kill()
        node.proc.wait()
        ports = free_ports(2)
        ours = subprocess.Popen([sys.executable, "-c", LISTENER, *map(str, ports)],
                                stdout=subprocess.PIPE)
        assert ours.stdout is not None and ours.stdout.readline().split()
        node = NodeProcess("nl", tmp_path / "nl.toml", ports[0], ports[1], tmp_path / "nl.log")
        node.proc = ours
        assert node.listening()
    finally:
        stop_processes([p for p in (squatter, ours) if p is not None], first=signal.SIGKILL)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE,
                                start_new_session=True)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              start_new_session=True)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        killed = stop_processes([stubborn, polite], grace=0.5)
        assert killed == [stubborn.pid]
        assert stubborn.returncode == -signal.SIGKILL
        assert polite.returncode == -signal.SIGTERM
        assert stop_processes([stubborn, polite]) == []  # safe to call twice
    finally:
        for proc in (stubborn, polite):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        if stubborn.stdout is not None:
            stubborn.stdout.close()


def test_a_deadline_names_what_it_was_waiting_for() -> None:
    with pytest.raises(HarnessTimeout, match="while waiting for the moon"):
        Deadline(0.1).wait_for(lambda: None, what="waiting for the moon")


def test_the_node_never_loads_the_drills_or_their_harness() -> None:
    """`liaison node serve` imports the CLI and the node: neither may pull in drill code."""
    probe = ("import sys, liaison_net.cli.main, liaison_net.node\n"
             "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
             "[['liaison_net', d] for d in ('demo', 'bench', 'chaos', 'drills')]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_ports_come_in_turn_from_the_range_in_use_skipping_taken_ones() -> None:
    """Each xdist worker picks from its own range (tests/conftest.py): no two workers, and
    no outgoing connection, can be handed the same port. A bound port is skipped."""
    from liaison_net.drills import harness
    from tests.conftest import worker_ports

    saved = (harness._port_range, harness._port_cursor)
    taken = socket.socket()
    try:
        ports = range(20_000, 20_100)
        harness.use_port_range(ports)
        first = harness.free_ports(1)[0]
        assert first in ports

        def after(k: int) -> int:
            return ports[(ports.index(first) + k) % len(ports)]

        taken.bind(("127.0.0.1", after(1)))  # someone else holds the next port
        assert harness.free_ports(2) == [after(2), after(3)]
        floor = harness.ephemeral_port_floor()
        ranges = [worker_ports(f"gw{i}", 4, floor) for i in range(4)]
        assert all(r.stop <= floor and len(r) >= 1000 for r in ranges)
        assert len({p for r in ranges for p in r}) == sum(len(r) for r in ranges)
        assert worker_ports(None, 1, floor) == range(10_000, floor)
    finally:
        taken.close()
        harness._port_range, harness._port_cursor = saved


def test_a_process_started_by_a_worker_picks_from_the_workers_range() -> None:
    """A bench a test runs as a subprocess starts PostgreSQL nodes, which connect out (to
    their store) before they listen: a port the kernel handed out and took back may go to
    that very connection (a node once exited at start, its port taken). So a subprocess
    picks from its parent's exported range, and a bench run alone below the ephemeral
    range (``avoid_ephemeral_ports``)."""
    import os

    from liaison_net.drills import harness

    probe = ("from liaison_net.drills import harness\n"
             "harness.avoid_ephemeral_ports()\n"
             "print(*harness.free_ports(3))\n")
    env = {**os.environ, harness.PORT_RANGE_ENV: "21000-21100"}
    picked = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, check=True).stdout.split()
    assert len(picked) == 3 and all(21_000 <= int(p) < 21_100 for p in picked)
    alone = {k: v for k, v in os.environ.items() if k != harness.PORT_RANGE_ENV}
    picked = subprocess.run([sys.executable, "-c", probe], env=alone, capture_output=True,
                            text=True, check=True).stdout.split()
    floor = harness.ephemeral_port_floor()
    assert all(1024 <= int(p) < floor for p in picked)
    assert os.environ[harness.PORT_RANGE_ENV]  # this worker exported its own range
