"""The whole node config: ``load`` reads the TOML file, ``parse`` checks every section
(each in its own module of this package) and assembles one ``NodeConfig``.

Also the two small sections whose values are ``NodeConfig`` fields of their own: [node]
(the node's id, data and certificate directories) and [auth] (officer tokens, cards, key
grace): their defaults are below, their bounds in ``parse``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liaison_net.config.admin import AdminConfig, _admin
from liaison_net.config.audit import AuditConfig, _audit
from liaison_net.config.clock import _clock_offset
from liaison_net.config.delivery import DeliveryConfig, _backoff, _delivery
from liaison_net.config.effects import EffectsConfig, _effects
from liaison_net.config.federation import FederationLimits, _federation_limits
from liaison_net.config.fields import _num, _str, _table
from liaison_net.config.four_eyes import FourEyesConfig, _four_eyes
from liaison_net.config.keys import _cosign_threshold
from liaison_net.config.limits import _limits
from liaison_net.config.listen import Address, _address
from liaison_net.config.peers import Peer, _peers
from liaison_net.config.requests import RequestConfig, _requests
from liaison_net.config.signals import _signals
from liaison_net.config.store import StoreConfig, _store_config
from liaison_net.config.supervision import _supervision
from liaison_net.config.workers import _verify_timeout, _verify_workers
from liaison_net.core.ids import NODE_ID_RE
from liaison_net.core.limits import Limits
from liaison_net.core.restart import RestartPolicy
from liaison_net.core.signals import SignalConfig
from liaison_net.errors import ConfigError

MAX_CONFIG_BYTES = 64 * 1024


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
    """The sections are read in the order below, which is the order a config with several
    faults reports them in: the first one found is the ConfigError raised."""
    unknown = set(data) - _TOP
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    base = path.resolve().parent
    node = _table(data, "node")
    node_id = _str(node, "node.id", "id")
    if not NODE_ID_RE.fullmatch(node_id):
        raise ConfigError(f"node.id must match {NODE_ID_RE.pattern}")
    listen = _table(data, "listen")
    peers = _peers(data.get("peers", []), node_id)
    delivery = _table(data, "delivery", required=False)
    auth = _table(data, "auth", required=False)
    limits = _limits(_table(data, "limits", required=False))
    backoff = _backoff(delivery)
    signals = _signals(_table(data, "signals", required=False))
    requests = _requests(_table(data, "requests", required=False))
    return NodeConfig(
        id=node_id,
        path=path,
        data_dir=base / _str(node, "node.data_dir", "data_dir"),
        cert_dir=base / _str(node, "node.cert_dir", "cert_dir"),
        federation=_address(listen, "federation"),
        client=_address(listen, "client"),
        peers=tuple(peers),
        delivery=_delivery(delivery, backoff),
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
        verify_timeout_s=_verify_timeout(_table(data, "workers", required=False)),
        audit=_audit(_table(data, "audit", required=False)),
        cosign_threshold=_cosign_threshold(_table(data, "keys", required=False)),
        four_eyes=_four_eyes(data, node_id),
        admin=_admin(_table(data, "admin", required=False)),
    )
