"""Node processes for the bench: the demo's network manager, with the bench's config.

``liaison_net.demo.network.DemoNetwork`` already makes the PKI (our admin code), configs on
free loopback ports, officer keystores and their enrolment with `liaison admin
enrol-officer`; the drills' harness (``liaison_net.drills.harness.NodeSet``, which it
extends) starts, stops or SIGKILLs one node while the others run, and reads a node's
database. The bench adds its delivery timings and a look at a node's directory.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import tomli_w

from liaison_net.demo.network import Deadline, DemoNetwork, OfficerSpec
from liaison_net.drills.harness import NodeProcess, free_ports
from liaison_net.store import observe

__all__ = ["BENCH_DELIVERY", "BenchNetwork", "Deadline", "OfficerSpec"]

#: The node's defaults, except quicker retries so that an outage ends in a second, not a
#: minute: the bench measures catch-up, not the back-off curve. Nothing else differs from
#: what an operator runs: a shorter ``directory_push_s`` (0.3 s until issue 16) made the
#: origin's sender read its outbox every 0.3 s, and an envelope committed during such a
#: read waited for it instead of being handed over (about one in seven at the light load).
BENCH_DELIVERY = {
    "backoff_initial_s": 0.2,
    "backoff_max_s": 1.0,
    "request_timeout_s": 30.0,
}


@dataclass
class BenchNetwork(DemoNetwork):
    log_level: str | None = "info"
    SECTIONS: ClassVar[Mapping[str, Mapping[str, Any]]] = {"delivery": BENCH_DELIVERY}
    DRILL: ClassVar[str] = "bench"
    READY_POLL_S: ClassVar[float] = 0.02  # restart-to-listen is one of the bench's figures
    #: ``[workers] verify`` of every node (None: the node's default, what operators run).
    verify_workers: int | None = None

    def _sections_of(self, nid: str, sections: Mapping[str, Mapping[str, Any]] | None,
                     ) -> dict[str, Mapping[str, Any]]:
        out = super()._sections_of(nid, sections)
        if self.verify_workers is not None:
            out["workers"] = {**out.get("workers", {}), "verify": self.verify_workers}
        return out

    def has_card(self, nid: str, officer: str) -> bool:
        """True once ``officer``'s card has reached node ``nid``'s directory."""
        try:
            return observe.has_card(self.store(nid), officer)
        except observe.ReadError:
            return False

    def add_worker(self, nid: str, number: int) -> str:
        """Worker ``number`` (2, 3, ...) of node ``nid``: the node's own config with
        listeners of its own, beside it (same data and certificates, so the same database);
        its key in ``nodes``. Started and stopped like any node of the set."""
        first = self.nodes[nid]
        config = tomllib.loads(first.config.read_text(encoding="utf-8"))
        federation, client = free_ports(2)
        config["listen"] = {"federation": f"127.0.0.1:{federation}",
                            "client": f"127.0.0.1:{client}"}
        path = first.config.with_name(f"{nid}-{number}.toml")
        path.write_text(tomli_w.dumps(config), encoding="utf-8")
        key = f"{nid}#{number}"
        self.nodes[key] = NodeProcess(nid, path, federation, client,
                                      first.log.with_name(f"{nid}-{number}.log"),
                                      log_level=first.log_level)
        return key
