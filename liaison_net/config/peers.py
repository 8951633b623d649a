"""[[peers]]: the other national nodes and the federation listeners to reach them at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from liaison_net.config.fields import _str
from liaison_net.core.ids import NODE_ID_RE
from liaison_net.errors import ConfigError

MAX_PEER_URLS = 8  # one per worker of the peer's node we may fail over to


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


def _peers(raw_peers: Any, node_id: str) -> list[Peer]:
    """Every ``[[peers]]`` table: another node's id, once each, and its urls."""
    peers = []
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
    return peers


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
