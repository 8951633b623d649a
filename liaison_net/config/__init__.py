"""Node configuration: one TOML file per node, validated once at start-up.

Relative paths in the file are resolved against the file's own directory, so
``node_configs/nl.toml`` can name ``../certs/nl`` and work from any working directory.
Every problem is a ConfigError naming the bad key.

One module per section holds its dataclass, defaults, bounds and reader (``delivery.py``
is [delivery], ``peers.py`` [[peers]], ...); ``fields.py`` the readers they share;
``node_config.py`` reads the file and assembles the ``NodeConfig``. Import from here.
"""

from liaison_net.config.admin import AdminConfig
from liaison_net.config.audit import AuditConfig
from liaison_net.config.delivery import DeliveryConfig
from liaison_net.config.effects import EffectsConfig
from liaison_net.config.federation import FederationLimits
from liaison_net.config.four_eyes import FourEyesConfig
from liaison_net.config.listen import Address
from liaison_net.config.node_config import MAX_CONFIG_BYTES, NodeConfig, load, parse
from liaison_net.config.peers import MAX_PEER_URLS, Peer
from liaison_net.config.requests import RequestConfig
from liaison_net.config.store import STORE_BACKENDS, StoreConfig
from liaison_net.config.workers import DEFAULT_VERIFY, auto_verify_workers

__all__ = [
    "DEFAULT_VERIFY",
    "MAX_CONFIG_BYTES",
    "MAX_PEER_URLS",
    "STORE_BACKENDS",
    "Address",
    "AdminConfig",
    "AuditConfig",
    "DeliveryConfig",
    "EffectsConfig",
    "FederationLimits",
    "FourEyesConfig",
    "NodeConfig",
    "Peer",
    "RequestConfig",
    "StoreConfig",
    "auto_verify_workers",
    "load",
    "parse",
]
