"""How `liaison admin` reaches a node's data: one way in, and one writer.

- Reads (status, keys list, revocations, audit verify) open the node's store read-only,
  through the same ``NodeStore`` interface the node uses; they never write.
- Writes (enrol-officer, revoke) ask the running node over its admin socket
  (``admin_api``), so the node stays the one writer and pushes the result to its peers
  at once. Only when no node is running does the command open the store itself and do
  the same work (``services.admin_desk``); the node pushes it on its next start.
- Key and certificate files (rotate-key, pseudonym-key) are files the running node
  watches (``services.key_watch``, ``pki.pseudonym_key_files``), not database rows.

The store, the desk and the certificates are imported by the function that uses them:
every admin command imports this module, and most need one of them, or none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from liaison_net import config as config_mod
from liaison_net.admin_api.wire import socket_path
from liaison_net.cli.admin_ask import ask_node
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import crypto
from liaison_net.errors import ConfigError

if TYPE_CHECKING:
    from liaison_net.services.admin_desk import AdminDesk
    from liaison_net.store.node_store import NodeStore

T = TypeVar("T")

def node_signing_key(cfg: config_mod.NodeConfig) -> crypto.SigningKeyPair:
    """The node's Ed25519 key, checked against its CA-issued signing certificate, so a card
    issued here verifies at every peer (and a misplaced key file is caught now)."""
    from liaison_net.pki import certificates

    seed_path = cfg.cert_dir / certificates.SIGNING_KEY_FILE
    try:
        seed = seed_path.read_bytes()
        cert_pem = (cfg.cert_dir / certificates.SIGNING_CERT_FILE).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the node signing key or certificate in "
                          f"{cfg.cert_dir}: {exc.strerror or exc}") from None
    if len(seed) != crypto.SECRET_SEED_BYTES:
        raise ConfigError(f"{seed_path} is not a 32-byte Ed25519 seed")
    key = crypto.signing_key_from_seed(seed)
    ca = certificates.load_ca_certificate(cfg.cert_dir / certificates.CA_CERT_FILE)
    node_id, public = certificates.verify_node_signing_certificate(
        cert_pem, ca, now=cli_clock().host_now())
    if node_id != cfg.id or public != key.public:
        raise ConfigError(f"{seed_path} does not match the signing certificate of node {cfg.id}")
    return key


def read_store(cfg: config_mod.NodeConfig, fn: Callable[[NodeStore], Awaitable[T]]) -> T:
    """Run ``fn`` on the node's store opened read-only (safe beside the running node)."""
    from liaison_net.store.node_store import NodeStore

    async def run() -> T:
        store = NodeStore.for_config(cfg)
        await store.open_read_only()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def write_via_node(cfg: config_mod.NodeConfig, route: str, body: bytes, content_type: str,
                   local: Callable[[AdminDesk], Awaitable[dict[str, Any]]],
                   ) -> tuple[dict[str, Any], bool]:
    """(answer, True) from the running node, or, when none runs, (answer, False) from
    ``local`` run on a desk over the node's own store."""

    async def run() -> tuple[dict[str, Any], bool]:
        answer = await ask_node(socket_path(cfg.data_dir), route, body, content_type)
        if answer is not None:
            return answer, True
        from liaison_net.services.admin_desk import AdminDesk
        from liaison_net.store.node_store import NodeStore

        key = node_signing_key(cfg)
        store = NodeStore.for_config(cfg)
        await store.open()
        try:
            desk = AdminDesk(node_id=cfg.id, store=store, signing_key=lambda: key,
                             peers=[p.id for p in cfg.peers],
                             card_validity_days=cfg.card_validity_days, clock=cli_clock(),
                             admin=cfg.admin)
            return await local(desk), False
        finally:
            await store.close()

    return asyncio.run(run())
