"""Prometheus metrics of one node, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge("liaison_queue_depth", "Envelopes queued per peer", ["peer"],
                                 registry=self.registry)
        self.accepted = Counter("liaison_accepted_total", "Envelopes accepted", ["source"],
                                registry=self.registry)
        self.delivered = Counter("liaison_delivered_total", "Envelopes delivered to a peer",
                                 ["peer"], registry=self.registry)
        self.refused = Counter("liaison_refused_total", "Refusals by reason code", ["code"],
                               registry=self.registry)
        self.retries = Counter("liaison_retries_total", "Failed transactions, retried later",
                               ["peer"], registry=self.registry)
        self.handed = Counter(
            "liaison_handed_total", "Envelopes sent to a peer as handed over at their "
            "commit, without reading the outbox (federation/inflight.py)", ["peer"],
            registry=self.registry)
        # Envelopes per federation transaction, by where the batch came from ("handed":
        # offers taken at their commit; "read": the outbox): its _count is the transactions
        # sent, its _sum their envelopes (federation/inflight.py, the batching rule).
        self.transaction_envelopes = Histogram(
            "liaison_transaction_envelopes", "Envelopes per federation transaction sent to a "
            "peer, by the batch's source (handed over or read from the outbox)",
            ["peer", "source"], registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
        self.latency = Histogram(
            "liaison_relay_latency_seconds", "Envelope created -> acknowledged by peer",
            ["peer"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))

        self.signals = Counter("liaison_signals_total", "Early-warning signal events",
                               ["event"], registry=self.registry)
        # Storage faults (issue 9): writes refused because the database could not grow.
        self.storage_refused = Counter(
            "liaison_storage_refused_writes_total",
            "Writes refused because the disk or the [store] max_db_mb quota is full "
            "(nothing of them stored)", registry=self.registry)
        self.storage_full = Gauge(
            "liaison_storage_full", "1 while the database refuses writes for lack of space",
            registry=self.registry)
        # Supervision (issue 14): each background loop's restarts, and whether it runs.
        self.loop_restarts = Counter(
            "liaison_loop_restarts_total", "Background loop crashes followed by a restart",
            ["loop"], registry=self.registry)
        self.loop_up = Gauge("liaison_loop_up", "1 while a background loop runs, 0 while it "
                             "waits to restart or has been given up on", ["loop"],
                             registry=self.registry)
        # Verification workers ([workers] verify, workers/verify_pool.py).
        self.verified = Counter(
            "liaison_verified_total", "Envelopes of batches verified with [workers] verify "
            "set, by where: a worker process or the node's own (a batch too small for a "
            "worker, no worker live, a refusal, a failover); single submits are not counted",
            ["where"], registry=self.registry)
        # Effects (issue 15): what decisions owe, waiting for the drain (services/effects).
        self.effects_pending = Gauge(
            "liaison_effects_pending", "Owed evidence, notices and receipts not yet issued "
            "(as of the drain's last pass)", registry=self.registry)
        self.effects_failed = Counter(
            "liaison_effects_failed_total", "Attempts to issue an owed envelope that failed "
            "(the effect is kept and retried)", registry=self.registry)

        # Audit checkpoints (issue 18, services/checkpoints.py): this node as a witness.
        self.checkpoints_witnessed = Counter(
            "liaison_audit_checkpoints_witnessed_total", "Peers' audit checkpoints this node "
            "checked and cosigned", ["node"], registry=self.registry)
        self.checkpoint_alarms = Counter(
            "liaison_audit_checkpoint_alarms_total", "Peers' audit checkpoints that showed a "
            "rewritten log: split view, rollback or inconsistent", ["node", "verdict"],
            registry=self.registry)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
