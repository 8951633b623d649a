"""Node configuration: one TOML file per node, validated once at start-up.

Relative paths in the file are resolved against the file's own directory, so
``node_configs/nl.toml`` can name ``../certs/nl`` and work from any working directory.
Every problem is a ConfigError naming the bad key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from liaison_net.clock import check_offset
from liaison_net.core import crypto
from liaison_net.core.admin_ops import ADMIN_NAME_RE
from liaison_net.core.approval import FourEyesPolicy
from liaison_net.core.delivery import BackoffPolicy
from liaison_net.core.ids import NODE_ID_RE, check_officer_id, node_of
from liaison_net.core.limits import Limits
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.core.restart import RestartPolicy
from liaison_net.core.signals import DEFAULT_ACK_DEADLINE_MS, Severity, SignalConfig
from liaison_net.errors import ConfigError, LiaisonError

MAX_CONFIG_BYTES = 64 * 1024


MAX_PEER_URLS = 8  # one per worker of the peer's node we may fail over to
#: [workers] verify when unset: 0, verification in the node's process. "auto" (a worker on
#: 2+ cores) gained 3-4 % at catch-up on the merged tree and cost the destination 10-20 %
#: more CPU per envelope and a longer single-submit p99 (docs/performance.md, "Full bench
#: after the issue-16 lanes of 4 December (fifth round)"): an operator's choice, not a default.
DEFAULT_VERIFY: int | str = 0


@dataclass(frozen=True)
class Peer:
    """A peer node and where to reach it: ``url`` is the first of ``urls``, the federation
    listeners of the peer's workers (several when it runs several; the sender fails over
    between them, ``federation/sender.py``)."""

    id: str
    url: str  # https://host:port of the peer's federation listener
    urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.urls:
            object.__setattr__(self, "urls", (self.url,))


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DeliveryConfig:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    batch_size: int = 256  # envelopes per federation transaction
    batch_bytes: int = 4 * 1024 * 1024  # envelope bytes per transaction (one envelope at least)
    in_flight: int = 3  # transactions in flight per peer (federation/inflight.py)
    request_timeout_s: float = 30.0
    expiry_sweep_s: float = 5.0
    directory_push_s: float = 2.0
    group_commit_max: int = 512  # writes per commit at most
    # Several workers for one node (docs/operations.md): how long a peer's sender lease
    # lasts unrenewed (a dead holder's peer waits that long for another worker), and how
    # often live inbox streams look for entries another worker committed.
    lease_s: float = 10.0
    inbox_poll_s: float = 1.0


@dataclass(frozen=True)
class RequestConfig:
    escalate_before_s: float = 3600.0  # escalate an open incoming request this long before due
    check_s: float = 5.0


@dataclass(frozen=True)
class StoreConfig:
    """[store]: where the node keeps its data and how it may grow (storage faults, issue 9;
    PostgreSQL, issue 17, docs/operations.md)."""

    max_db_mb: float | None = None  # a quota: past it writes are refused 503, nothing acked
    retention_sweep_s: float = 60.0  # how often envelopes past retain_until are purged
    backend: str = "sqlite"  # or "postgresql"
    dsn: str | None = None  # postgresql: a libpq connection string or URL, no password
    password_file: Path | None = None  # postgresql: the password, a 0600 file

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: checkpoints of the audit log, witnessed by the peers (services/checkpoints.py)."""

    checkpoint_every: int = 1000  # a checkpoint once this many entries were added
    checkpoint_seconds: float = 300.0  # and at least this often while entries are added


@dataclass(frozen=True)
class EffectsConfig:
    """[effects]: the drain that issues what decisions owe (services/effects.py)."""

    poll_s: float = 2.0  # a pass at least this often, besides the wake after each commit
    batch: int = 256  # effects per pass
    retry_max_s: float = 300.0  # backoff cap for an effect that keeps failing
    drain_delay_s: float = 0.0  # tests only: hold each pass back (a crash before the drain)
    # After a commit's wake, gather what the next commits owe too: at a light load one seal,
    # one commit and one transaction then cover several envelopes' evidence. Off by
    # default: it halves the CPU of a light load but its bursts lengthen the latency tail.
    linger_s: float = 0.0


@dataclass(frozen=True)
class FederationLimits:
    """[federation]: what one peer may cost this node (hostile-peer limits, issue 9).

    The defaults sit well above what an honest peer sends (at most ``[delivery] in_flight``
    (<= 4) transactions and a directory push at a time, each at most ``batch_size``
    envelopes); docs/protocol.md §13 lists them."""

    envelopes_per_s: float = 5000.0  # per peer, long-run; a request costs max(1, items)
    burst: int = 10_000  # per peer: what the token bucket holds
    in_flight_per_peer: int = 8  # requests of one peer being handled at once
    connections_per_peer: int = 16  # open TLS connections of one peer
    handshake_timeout_s: float = 10.0  # TCP accept -> TLS handshake done
    # connection open (or last answer) -> request head read; also the idle keep-alive time,
    # kept above aiohttp clients' 15 s keep-alive so a sender never reuses a closing one
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0  # request head -> whole body read
    audit_window_s: float = 60.0  # at most one audit entry per peer per window for refusals


@dataclass(frozen=True)
class FourEyesConfig:
    """[four_eyes]: which envelopes need a second officer before they leave this node, who
    may approve them (per unit: the tag owner's unit), and how long they wait. Off when
    the section is absent; present, the policy defaults to TLP:RED, H3 and signals of
    the highest severity (core/approval.py)."""

    enabled: bool = False
    policy: FourEyesPolicy = field(default_factory=FourEyesPolicy)
    unit_policies: dict[str, FourEyesPolicy] = field(default_factory=dict)
    approvers: dict[str, frozenset[str]] = field(default_factory=dict)  # unit -> officers
    hold_hours: float = 24.0
    sweep_s: float = 30.0

    def policy_for(self, unit: str) -> FourEyesPolicy:
        return self.unit_policies.get(unit, self.policy)

    def units_of(self, officer: str) -> list[str]:
        return sorted(u for u, people in self.approvers.items() if officer in people)


@dataclass(frozen=True)
class AdminConfig:
    """[admin]: with ``four_eyes``, enrolment, revocation and node key rotation need two
    administrators: one proposes (signed with their admin key), another approves (their
    own key). ``admins``: name -> Ed25519 public key (`liaison admin admin-key init`)."""

    four_eyes: bool = False
    admins: dict[str, bytes] = field(default_factory=dict)
    pending_hours: float = 24.0


@dataclass(frozen=True)
class NodeConfig:
    id: str
    path: Path  # the TOML file this came from
    data_dir: Path
    cert_dir: Path
    federation: Address
    client: Address
    peers: tuple[Peer, ...]
    delivery: DeliveryConfig
    limits: Limits
    token_ttl_s: int = 900
    card_validity_days: int = 365
    key_grace_s: int = 86_400  # a superseded key is still accepted this long
    signals: SignalConfig = field(default_factory=SignalConfig.default)
    requests: RequestConfig = field(default_factory=RequestConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    federation_limits: FederationLimits = field(default_factory=FederationLimits)
    clock_offset_ms: int = 0  # [clock] drill_offset_ms: fault drills only, never production
    supervision: RestartPolicy = field(default_factory=RestartPolicy)  # [supervision]
    effects: EffectsConfig = field(default_factory=EffectsConfig)  # [effects]
    verify_workers: int = 0  # [workers] verify: envelope verification processes (workers/)
    # [workers] verify_timeout_s: a worker silent this long on a batch is killed, the batch
    # verified in the node's process
    verify_timeout_s: float = 10.0
    audit: AuditConfig = field(default_factory=AuditConfig)  # [audit]
    # [keys] cosign_threshold: co-signatures of the other national nodes a node key change
    # needs before this node believes it (core/key_change.py)
    cosign_threshold: int = 2
    four_eyes: FourEyesConfig = field(default_factory=FourEyesConfig)  # [four_eyes]
    admin: AdminConfig = field(default_factory=AdminConfig)  # [admin]

    @property
    def database(self) -> Path:
        return self.data_dir / "node.sqlite3"

    def peer(self, node_id: str) -> Peer | None:
        return next((p for p in self.peers if p.id == node_id), None)


STORE_BACKENDS = ("sqlite", "postgresql")

_TOP = {"node", "listen", "peers", "delivery", "limits", "auth", "signals", "requests",
        "store", "federation", "clock", "supervision", "effects", "workers", "audit", "keys",
        "four_eyes", "admin"}


def load(path: Path) -> NodeConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> NodeConfig:
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    base = path.resolve().parent
    node = _table(data, "node")
    node_id = _str(node, "node.id", "id")
    if not NODE_ID_RE.fullmatch(node_id):
        raise ConfigError(f"node.id must match {NODE_ID_RE.pattern}")
    listen = _table(data, "listen")
    peers = []
    raw_peers = data.get("peers", [])
    if not isinstance(raw_peers, list):
        raise ConfigError("peers must be an array of tables ([[peers]])")
    for i, p in enumerate(raw_peers):
        if not isinstance(p, dict):
            raise ConfigError(f"peers[{i}] must be a table")
        peer_id = _str(p, f"peers[{i}].id", "id")
        if not NODE_ID_RE.fullmatch(peer_id) or peer_id == node_id:
            raise ConfigError(f"peers[{i}].id must be another node's id")
        urls = _peer_urls(p, f"peers[{i}]")
        peers.append(Peer(peer_id, urls[0], urls))
    if len({p.id for p in peers}) != len(peers):
        raise ConfigError("peers lists a node twice")
    delivery = _table(data, "delivery", required=False)
    auth = _table(data, "auth", required=False)
    try:
        limits = Limits(**_table(data, "limits", required=False))
    except TypeError as exc:
        raise ConfigError(f"limits: {exc}") from exc
    except LiaisonError:
        raise
    backoff = BackoffPolicy(
        initial_s=_num(delivery, "delivery.backoff_initial_s", 1.0, 0.01, 600),
        maximum_s=_num(delivery, "delivery.backoff_max_s", 60.0, 0.1, 3600),
    )
    known_delivery = {"backoff_initial_s", "backoff_max_s", "batch_size", "request_timeout_s",
                      "expiry_sweep_s", "directory_push_s", "group_commit_max",
                      "batch_bytes", "in_flight", "lease_s", "inbox_poll_s"}
    if unknown := set(delivery) - known_delivery:
        raise ConfigError(f"unknown delivery key(s): {', '.join(sorted(unknown))}")
    sig = _table(data, "signals", required=False)
    known_signals = {f"ack_deadline_{s.label}_s" for s in Severity} | {
        "escalation_check_s", "evaluations_per_hour"}
    if unknown := set(sig) - known_signals:
        raise ConfigError(f"unknown signals key(s): {', '.join(sorted(unknown))}")
    signals = SignalConfig(
        ack_deadline_ms={s: int(1000 * _num(sig, f"signals.ack_deadline_{s.label}_s",
                                            DEFAULT_ACK_DEADLINE_MS[s] / 1000, 0.1, 30 * 86_400))
                         for s in Severity},
        escalation_check_s=_num(sig, "signals.escalation_check_s", 1.0, 0.05, 3600),
        evaluations_per_hour=int(_num(sig, "signals.evaluations_per_hour", 30, 1, 10_000)),
    )
    req = _table(data, "requests", required=False)
    if unknown := set(req) - {"escalate_before_s", "check_s"}:
        raise ConfigError(f"unknown requests key(s): {', '.join(sorted(unknown))}")
    requests = RequestConfig(
        escalate_before_s=_num(req, "requests.escalate_before_s", 3600.0, 0, 30 * 86_400),
        check_s=_num(req, "requests.check_s", 5.0, 0.05, 3600))
    return NodeConfig(
        id=node_id,
        path=path,
        data_dir=base / _str(node, "node.data_dir", "data_dir"),
        cert_dir=base / _str(node, "node.cert_dir", "cert_dir"),
        federation=_address(listen, "federation"),
        client=_address(listen, "client"),
        peers=tuple(peers),
        delivery=DeliveryConfig(
            backoff=backoff,
            batch_size=int(_num(delivery, "delivery.batch_size", 256, 1, 4096)),
            batch_bytes=int(_num(delivery, "delivery.batch_bytes", 4 * 1024 * 1024,
                                 64 * 1024, 64 * 1024 * 1024)),
            # A peer admits 8 requests of ours at once by default (its [federation]
            # in_flight_per_peer): at most 4 transactions, one more in the slot kept for
            # urgent ones, and a directory push.
            in_flight=int(_num(delivery, "delivery.in_flight", 3, 1, 4)),
            request_timeout_s=_num(delivery, "delivery.request_timeout_s", 30.0, 0.5, 600),
            expiry_sweep_s=_num(delivery, "delivery.expiry_sweep_s", 5.0, 0.1, 3600),
            directory_push_s=_num(delivery, "delivery.directory_push_s", 2.0, 0.1, 3600),
            group_commit_max=int(_num(delivery, "delivery.group_commit_max", 512, 1, 10_000)),
            lease_s=_num(delivery, "delivery.lease_s", 10.0, 0.5, 600),
            inbox_poll_s=_num(delivery, "delivery.inbox_poll_s", 1.0, 0.05, 60),
        ),
        limits=limits,
        token_ttl_s=int(_num(auth, "auth.token_ttl_s", 900, 10, 86_400)),
        card_validity_days=int(_num(auth, "auth.card_validity_days", 365, 1, 3650)),
        key_grace_s=int(_num(auth, "auth.key_grace_s", 86_400, 0, 30 * 86_400)),
        signals=signals,
        requests=requests,
        store=_store_config(_table(data, "store", required=False), path.parent),
        federation_limits=_federation_limits(_table(data, "federation", required=False)),
        clock_offset_ms=_clock_offset(_table(data, "clock", required=False)),
        supervision=_supervision(_table(data, "supervision", required=False)),
        effects=_effects(_table(data, "effects", required=False)),
        verify_workers=_verify_workers(_table(data, "workers", required=False)),
        verify_timeout_s=_num(_table(data, "workers", required=False),
                              "workers.verify_timeout_s", 10.0, 0.5, 120.0),
        audit=_audit(_table(data, "audit", required=False)),
        cosign_threshold=_cosign_threshold(_table(data, "keys", required=False)),
        four_eyes=_four_eyes(data, node_id),
        admin=_admin(_table(data, "admin", required=False)),
    )


def _peer_urls(peer: dict[str, Any], where: str) -> tuple[str, ...]:
    """``url``, ``urls = [...]`` or both (``url`` first): each https://host:port, no
    repeats, at most ``MAX_PEER_URLS``."""
    if unknown := set(peer) - {"id", "url", "urls"}:
        raise ConfigError(f"unknown {where} key(s): {', '.join(sorted(unknown))}")
    listed: list[Any] = [peer["url"]] if "url" in peer else []
    extra = peer.get("urls", [])
    if not isinstance(extra, list):
        raise ConfigError(f"{where}.urls must be an array of https://host:port")
    listed += extra
    if not listed:
        raise ConfigError(f"{where} needs url (or urls)")
    if len(listed) > MAX_PEER_URLS:
        raise ConfigError(f"{where} lists more than {MAX_PEER_URLS} urls")
    urls: list[str] = []
    for url in listed:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname or not parts.port:
            raise ConfigError(f"{where}.url(s) must be https://host:port")
        if url.rstrip("/") in urls:
            raise ConfigError(f"{where} lists {url} twice")
        urls.append(url.rstrip("/"))
    return tuple(urls)


def _audit(table: dict[str, Any]) -> AuditConfig:
    if unknown := set(table) - {"checkpoint_every", "checkpoint_seconds"}:
        raise ConfigError(f"unknown audit key(s): {', '.join(sorted(unknown))}")
    return AuditConfig(
        checkpoint_every=int(_num(table, "audit.checkpoint_every", 1000, 1, 1_000_000)),
        checkpoint_seconds=_num(table, "audit.checkpoint_seconds", 300.0, 0.1, 86_400))


def _cosign_threshold(table: dict[str, Any]) -> int:
    """[keys] cosign_threshold: 1-8 co-signatures of other national nodes (default 2)."""
    if unknown := set(table) - {"cosign_threshold"}:
        raise ConfigError(f"unknown keys key(s): {', '.join(sorted(unknown))}")
    value = table.get("cosign_threshold", 2)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8:
        raise ConfigError("keys.cosign_threshold must be a whole number between 1 and 8")
    return value


def auto_verify_workers(cpus: int | None) -> int:
    """``[workers] verify = "auto"`` (the default): one worker when the machine has a
    second core for it, else none (on one core a worker only adds its round trips)."""
    return 1 if (cpus or 1) >= 2 else 0


def _verify_workers(table: dict[str, Any]) -> int:
    """[workers] verify: 0 (the default: verify in the node's process) to 8 processes,
    started at the node's first bulk batch, or "auto" (``auto_verify_workers``)."""
    if unknown := set(table) - {"verify", "verify_timeout_s"}:
        raise ConfigError(f"unknown workers key(s): {', '.join(sorted(unknown))}")
    value = table.get("verify", DEFAULT_VERIFY)
    if value == "auto":
        return auto_verify_workers(os.cpu_count())
    if not isinstance(value, int):
        raise ConfigError('workers.verify must be "auto" or a whole number between 0 and 8')
    return int(_num(table, "workers.verify", 0, 0, 8))


def _effects(table: dict[str, Any]) -> EffectsConfig:
    if unknown := set(table) - {"poll_s", "batch", "retry_max_s", "drain_delay_s",
                                "linger_s"}:
        raise ConfigError(f"unknown effects key(s): {', '.join(sorted(unknown))}")
    return EffectsConfig(poll_s=_num(table, "effects.poll_s", 2.0, 0.05, 3600),
                         batch=int(_num(table, "effects.batch", 256, 1, 10_000)),
                         retry_max_s=_num(table, "effects.retry_max_s", 300.0, 0.1, 86_400),
                         drain_delay_s=_num(table, "effects.drain_delay_s", 0.0, 0, 3600),
                         linger_s=_num(table, "effects.linger_s", 0.0, 0, 5))


def _supervision(table: dict[str, Any]) -> RestartPolicy:
    """[supervision]: how a crashed background loop is restarted (supervisor.py)."""
    if unknown := set(table) - {"restart_base_s", "restart_max_s", "intensity", "period_s"}:
        raise ConfigError(f"unknown supervision key(s): {', '.join(sorted(unknown))}")
    base = _num(table, "supervision.restart_base_s", 0.5, 0.01, 600)
    return RestartPolicy(
        base_s=base, max_s=max(base, _num(table, "supervision.restart_max_s", 30.0, 0.01, 3600)),
        intensity=int(_num(table, "supervision.intensity", 5, 1, 1000)),
        period_s=_num(table, "supervision.period_s", 60.0, 1, 86_400))


def _clock_offset(table: dict[str, Any]) -> int:
    if unknown := set(table) - {"drill_offset_ms"}:
        raise ConfigError(f"unknown clock key(s): {', '.join(sorted(unknown))}")
    return check_offset(table.get("drill_offset_ms", 0), "clock.drill_offset_ms")


def _store_config(table: dict[str, Any], base: Path = Path(".")) -> StoreConfig:
    if unknown := set(table) - {"max_db_mb", "retention_sweep_s", "backend", "dsn",
                                "password_file"}:
        raise ConfigError(f"unknown store key(s): {', '.join(sorted(unknown))}")
    quota = table.get("max_db_mb")
    backend = table.get("backend", "sqlite")
    if backend not in STORE_BACKENDS:
        raise ConfigError(f"store.backend must be one of {', '.join(STORE_BACKENDS)}, "
                          f"not {str(backend)[:40]!r}")
    dsn: str | None = None
    password_file: Path | None = None
    if backend == "postgresql":
        # Imported here: only a PostgreSQL node loads the driver.
        from liaison_net.store.postgres import check_dsn, check_password_file

        if quota is not None:
            raise ConfigError("store.max_db_mb is for SQLite only: on PostgreSQL, give the "
                              "database its own volume or tablespace and watch that")
        dsn = check_dsn(_str(table, "store.dsn", "dsn"))
        if "password_file" in table:
            password_file = check_password_file(
                base / _str(table, "store.password_file", "password_file"))
    elif "dsn" in table or "password_file" in table:
        raise ConfigError("store.dsn and store.password_file need store.backend = "
                          "\"postgresql\"")
    return StoreConfig(max_db_mb=None if quota is None
                       else _num(table, "store.max_db_mb", 0, 0.1, 1_000_000),
                       retention_sweep_s=_num(table, "store.retention_sweep_s", 60.0, 0.1,
                                              3600),
                       backend=backend, dsn=dsn, password_file=password_file)


def _federation_limits(table: dict[str, Any]) -> FederationLimits:
    d = FederationLimits()
    bounds: dict[str, tuple[float, float, float]] = {
        "envelopes_per_s": (d.envelopes_per_s, 0.1, 1_000_000),
        "burst": (d.burst, 1, 1_000_000),
        "in_flight_per_peer": (d.in_flight_per_peer, 1, 1024),
        "connections_per_peer": (d.connections_per_peer, 1, 4096),
        "handshake_timeout_s": (d.handshake_timeout_s, 0.1, 300),
        "header_timeout_s": (d.header_timeout_s, 0.1, 3600),
        "body_timeout_s": (d.body_timeout_s, 0.1, 3600),
        "audit_window_s": (d.audit_window_s, 1, 86_400),
    }
    if unknown := set(table) - set(bounds):
        raise ConfigError(f"unknown federation key(s): {', '.join(sorted(unknown))}")
    values = {key: _num(table, f"federation.{key}", default, lo, hi)
              for key, (default, lo, hi) in bounds.items()}
    for key in ("burst", "in_flight_per_peer", "connections_per_peer"):
        if values[key] != int(values[key]):
            raise ConfigError(f"federation.{key} must be a whole number")
    if values["connections_per_peer"] < values["in_flight_per_peer"]:
        raise ConfigError("federation.connections_per_peer must be at least "
                          "federation.in_flight_per_peer")
    return FederationLimits(
        envelopes_per_s=values["envelopes_per_s"], burst=int(values["burst"]),
        in_flight_per_peer=int(values["in_flight_per_peer"]),
        connections_per_peer=int(values["connections_per_peer"]),
        handshake_timeout_s=values["handshake_timeout_s"],
        header_timeout_s=values["header_timeout_s"], body_timeout_s=values["body_timeout_s"],
        audit_window_s=values["audit_window_s"])


def _four_eyes(data: dict[str, Any], node_id: str) -> FourEyesConfig:
    """[four_eyes], with [four_eyes.approvers] (unit = [officer ids]: this node's count) and
    [four_eyes.units.<unit>] (a unit's own tlp / handling / signal_severity lists)."""
    if "four_eyes" not in data:
        return FourEyesConfig()
    table = _table(data, "four_eyes")
    known = {"enabled", "tlp", "handling", "signal_severity", "hold_hours", "sweep_s",
             "approvers", "units"}
    if unknown := set(table) - known:
        raise ConfigError(f"unknown four_eyes key(s): {', '.join(sorted(unknown))}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("four_eyes.enabled must be true or false")
    approvers: dict[str, frozenset[str]] = {}
    for unit, people in _table(table, "approvers", required=False).items():
        name = f"four_eyes.approvers.{unit}"
        if not isinstance(people, list) or not people:
            raise ConfigError(f"{name} must be a non-empty list of officer ids")
        try:
            ids = frozenset(check_officer_id(p, what=name) for p in people)
        except LiaisonError as exc:
            raise ConfigError(f"{name}: {exc.detail}") from None
        # One list may serve every node of a network (the demo's, the tests'): each node
        # takes only its own officers; an approver is always of the sender's node.
        approvers[unit] = frozenset(p for p in ids if node_of(p) == node_id)
    units = _table(table, "units", required=False)
    return FourEyesConfig(
        enabled=enabled, policy=_four_eyes_policy(table, "four_eyes"),
        unit_policies={u: _four_eyes_policy(_table(units, u), f"four_eyes.units.{u}")
                       for u in units},
        approvers=approvers,
        hold_hours=_num(table, "four_eyes.hold_hours", 24.0, 0.0001, 30 * 24),
        sweep_s=_num(table, "four_eyes.sweep_s", 30.0, 0.05, 3600))


def _admin(table: dict[str, Any]) -> AdminConfig:
    if unknown := set(table) - {"four_eyes", "admins", "pending_hours"}:
        raise ConfigError(f"unknown admin key(s): {', '.join(sorted(unknown))}")
    four_eyes = table.get("four_eyes", False)
    if not isinstance(four_eyes, bool):
        raise ConfigError("admin.four_eyes must be true or false")
    admins: dict[str, bytes] = {}
    for name, hex_key in _table(table, "admins", required=False).items():
        if not ADMIN_NAME_RE.fullmatch(name) or not isinstance(hex_key, str):
            raise ConfigError(f"admin.admins.{name}: a name ({ADMIN_NAME_RE.pattern}) = the "
                              "hex public key `liaison admin admin-key init` printed")
        try:
            admins[name] = crypto.check_signing_public(bytes.fromhex(hex_key),
                                                      f"admin key of {name}")
        except (ValueError, LiaisonError):
            raise ConfigError(f"admin.admins.{name} is not a valid Ed25519 public key") from None
    if len(set(admins.values())) != len(admins):
        raise ConfigError("admin.admins lists one key under two names")
    if four_eyes and len(admins) < 2:
        raise ConfigError("admin.four_eyes needs at least two administrators in "
                          "[admin.admins]")
    return AdminConfig(four_eyes, admins,
                       _num(table, "admin.pending_hours", 24.0, 0.01, 30 * 24))


def _four_eyes_policy(table: dict[str, Any], name: str) -> FourEyesPolicy:
    if unknown := set(table) - {"tlp", "handling", "signal_severity", "enabled",
                                "hold_hours", "sweep_s", "approvers", "units"}:
        raise ConfigError(f"unknown {name} key(s): {', '.join(sorted(unknown))}")
    default = FourEyesPolicy()

    def values(key: str) -> list[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}.{key} must be a list of names")
        return value

    try:
        tlp, handling, severity = values("tlp"), values("handling"), values("signal_severity")
        return FourEyesPolicy(
            tlp=default.tlp if tlp is None else frozenset(Tlp(v) for v in tlp),
            handling=(default.handling if handling is None
                      else frozenset(Handling(v) for v in handling)),
            signal_severity=(default.signal_severity if severity is None
                             else frozenset(Severity.from_label(v) for v in severity)))
    except (ValueError, LiaisonError):
        raise ConfigError(f"{name}: tlp takes {[t.value for t in Tlp]}, handling "
                          f"{[h.value for h in Handling]}, signal_severity "
                          f"{[s.label for s in Severity]}") from None


def _table(data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] section is {'missing' if value is None else 'not a table'}")
    return value


def _str(table: dict[str, Any], name: str, key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    return value


def _num(table: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = table.get(name.split(".")[-1], default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number between {lo} and {hi}")
    return float(value)


def _address(listen: dict[str, Any], key: str) -> Address:
    value = _str(listen, f"listen.{key}", key)
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen.{key} must be host:port, got {value!r}")
    return Address(host, int(port))
