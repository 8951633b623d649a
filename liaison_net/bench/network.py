"""Node processes for the bench: the demo's network manager, plus one node at a time.

``liaison_net.demo.network.DemoNetwork`` already makes the PKI (our admin code), configs on
free loopback ports, officer keystores and their enrolment with `liaison admin
enrol-officer`, and starts and stops every node. The bench adds what its scenarios need:
start, stop or SIGKILL one node while the others run, and read a node's database.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from liaison_net.demo.network import (
    LIAISON,
    STOP_GRACE_S,
    Deadline,
    DemoNetwork,
    NodeProcess,
    OfficerSpec,
)
from liaison_net.store import observe

__all__ = ["BENCH_DELIVERY", "BenchNetwork", "Deadline", "OfficerSpec"]

#: The node's defaults, except quicker retries so that an outage ends in a second, not a
#: minute: the bench measures catch-up, not the back-off curve.
BENCH_DELIVERY = {
    "backoff_initial_s": 0.2,
    "backoff_max_s": 1.0,
    "directory_push_s": 0.3,
    "request_timeout_s": 30.0,
}


@dataclass
class BenchNetwork(DemoNetwork):
    log_level: str = "info"

    def config_text(self, node: NodeProcess) -> str:
        delivery = "".join(f"{key} = {value}\n" for key, value in BENCH_DELIVERY.items())
        peers = "".join(f'\n[[peers]]\nid = "{other.id}"\nurl = "{other.federation_url}"\n'
                        for other in self.nodes.values() if other.id != node.id)
        return (f"# Bench node {node.id}: written by `liaison bench`.\n"
                f'[node]\nid = "{node.id}"\ndata_dir = "../data/{node.id}"\n'
                f'cert_dir = "../certs/{node.id}"\n\n'
                f'[listen]\nfederation = "127.0.0.1:{node.federation_port}"\n'
                f'client = "127.0.0.1:{node.client_port}"\n\n'
                f"[delivery]\n{delivery}{peers}")

    def start_node(self, nid: str, deadline: Deadline | None = None) -> int:
        """Start one node (its log appended to); with ``deadline``, wait until it listens."""
        node = self.nodes[nid]
        if node.running():
            raise RuntimeError(f"node {nid} is already running")
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [*LIAISON, "node", "serve", "--config", str(node.config),
                 "--log-level", self.log_level],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        if deadline is not None:
            self.wait_node(nid, deadline)
        return node.proc.pid

    def wait_node(self, nid: str, deadline: Deadline) -> None:
        node = self.nodes[nid]
        deadline.wait_for(functools.partial(self._ready, node),
                          what=f"waiting for node {nid} to listen", interval=0.02)

    def stop_node(self, nid: str, *, kill: bool) -> None:
        """SIGKILL (a crash), or SIGTERM and wait (an orderly stop), the node we started."""
        node = self.nodes[nid]
        if node.proc is None or node.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            node.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            node.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                node.proc.kill()
            node.proc.wait(timeout=STOP_GRACE_S)

    def pid(self, nid: str) -> int | None:
        node = self.nodes[nid]
        return node.proc.pid if node.running() and node.proc is not None else None

    def database(self, nid: str) -> Path:
        return self.root / "data" / nid / "node.sqlite3"

    def has_card(self, nid: str, officer: str) -> bool:
        """True once ``officer``'s card has reached node ``nid``'s directory."""
        try:
            return observe.has_card(self.database(nid), officer)
        except observe.ReadError:
            return False
