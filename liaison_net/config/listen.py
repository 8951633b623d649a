"""[listen]: the node's two listeners, ``federation`` (mutual TLS, the peers) and
``client`` (the officers), each ``host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liaison_net.config.fields import _str
from liaison_net.errors import ConfigError


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _address(listen: dict[str, Any], key: str) -> Address:
    value = _str(listen, f"listen.{key}", key)
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen.{key} must be host:port, got {value!r}")
    return Address(host, int(port))
