"""A running node notices new key files and switches to them without a restart.

`liaison admin rotate-key tls` and `keys apply` write new files into the node's certificate
directory; the watcher polls their modification times. A TLS change reloads the certificate
chain into the live SSL contexts (new connections use it; connections in use finish on the old one,
so no transaction fails). A signing-key change is taken only once key and CA certificate
match, then handed to the node, which switches only when an applied key change co-signed by
the other national nodes introduces it (``core/key_change.py``, `liaison admin keys apply`)
and keeps the old key valid at peers for a grace period.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from cryptography import x509

from liaison_net.clock import Clock
from liaison_net.core import crypto
from liaison_net.errors import LiaisonError
from liaison_net.pki import certificates

log = structlog.get_logger("liaison.keys")

#: Called with the new signing key and its certificate once both match.
OnSigningKey = Callable[[crypto.SigningKeyPair, bytes], Awaitable[None]]


def _mtimes(*paths: Path) -> tuple[int, ...]:
    try:
        return tuple(p.stat().st_mtime_ns for p in paths)
    except OSError:
        return ()


class KeyWatcher:
    def __init__(self, paths: certificates.NodePaths, ca_cert: x509.Certificate,
                 contexts: list[ssl.SSLContext], on_signing_key: OnSigningKey,
                 current_signing_public: Callable[[], bytes], interval_s: float = 1.0, *,
                 clock: Clock) -> None:
        self.paths = paths
        self.clock = clock  # X.509 validity: the host's time (clock.host_now)
        self.ca_cert = ca_cert
        self.contexts = contexts
        self.on_signing_key = on_signing_key
        self.current_signing_public = current_signing_public
        self.interval_s = interval_s
        self._tls = _mtimes(paths.tls_cert, paths.tls_key)
        self._signing = _mtimes(paths.signing_key, paths.signing_cert)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> None:
        tls = _mtimes(self.paths.tls_cert, self.paths.tls_key)
        if tls and tls != self._tls and self._reload_tls():
            self._tls = tls
        signing = _mtimes(self.paths.signing_key, self.paths.signing_cert)
        if signing and signing != self._signing and await self._reload_signing():
            self._signing = signing

    def _reload_tls(self) -> bool:
        try:
            for ctx in self.contexts:
                ctx.load_cert_chain(self.paths.tls_cert, self.paths.tls_key)
        except (ssl.SSLError, OSError) as exc:
            # Half-written pair (key replaced, certificate not yet): try again next tick.
            log.info("tls.reload_deferred", reason=type(exc).__name__)
            return False
        log.info("tls.reloaded", cert=str(self.paths.tls_cert))
        return True

    async def _reload_signing(self) -> bool:
        try:
            seed = self.paths.signing_key.read_bytes()
            cert_pem = self.paths.signing_cert.read_bytes()
            key = crypto.signing_key_from_seed(seed)
            node_id, public = certificates.verify_node_signing_certificate(
                cert_pem, self.ca_cert, now=self.clock.host_now())
        except (OSError, LiaisonError) as exc:
            log.info("signing_key.reload_deferred", reason=type(exc).__name__)
            return False
        if node_id != self.paths.node_id or public != key.public:
            log.info("signing_key.reload_deferred", reason="key and certificate differ")
            return False
        if key.public != self.current_signing_public():
            await self.on_signing_key(key, cert_pem)
        return True
