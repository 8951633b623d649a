"""A peer's new node key is believed only through its co-signed key changes.

A peer pushes its signing certificate with the recent chain of its key changes
(``core/key_change.py``). Each change not held yet must be the next serial, carry the
threshold of co-signatures of the other national nodes (as this node knows their keys:
its own and its configured peers'), and, for a rotation, the old key's signature. The CA
certificate must then present the key the chain ends on. Anything else is refused as a
whole (audit ``key.change_refused``, typed error): the CA's signature alone no longer moves
a country's key.
"""

from __future__ import annotations

import hashlib

import structlog

from liaison_net.clock import Clock
from liaison_net.core import crypto, key_change
from liaison_net.core.ids import node_principal
from liaison_net.errors import (
    CosignThreshold,
    Forbidden,
    LiaisonError,
    LimitExceeded,
    Malformed,
    SerialReplayed,
)
from liaison_net.services.intake import Keys
from liaison_net.store.key_store import AppliedChange, KeyStore
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.keys")

MAX_CHAIN = key_change.MAX_CHAIN  # a push carries at most the peer's latest 16 changes


def body_hash(raw: bytes) -> bytes:
    return hashlib.sha256(key_change.split(raw)[1]).digest()


async def unrevoked_cosigners(keys: KeyStore, cosigners: dict[str, bytes], *, now: int
                              ) -> dict[str, bytes]:
    """``cosigners`` without the nodes whose key this node holds as revoked: a revoked key
    co-signs nothing. One rule for the peers (``KeyChangeDesk``) and for `liaison admin keys
    apply`, so a node never installs a change its peers would refuse."""
    revoked = await keys.revoked_among([crypto.signing_key_id(k) for k in cosigners.values()],
                                       now=now)
    return {n: k for n, k in cosigners.items() if crypto.signing_key_id(k) not in revoked}


class KeyChangeDesk:
    def __init__(self, *, node_id: str, peers: frozenset[str], store: NodeStore, keys: Keys,
                 threshold: int, grace_ms: int, clock: Clock) -> None:
        self.node_id = node_id
        self.members = peers | {node_id}
        self.store = store
        self.keys = keys
        self.threshold = threshold
        self.grace_ms = grace_ms
        self.clock = clock
        self._last_refused: dict[str, bytes] = {}  # peer -> digest of its last refused push

    def cosigner_keys(self, subject: str) -> dict[str, bytes]:
        """The current keys of the national nodes that may co-sign a change of ``subject``:
        this node and its configured peers, never the subject itself."""
        return {n: k for n, k in self.keys.nodes.items() if n in self.members and n != subject}

    async def receive(self, peer: str, chain: list[bytes], cert_pem: bytes,
                      cert_public: bytes) -> None:
        """Take ``peer``'s certified key ``cert_public`` if its chain of changes leads to it
        (or it is the key already held); refuse and audit otherwise."""
        if len(chain) > MAX_CHAIN:
            raise Forbidden(f"at most {MAX_CHAIN} key changes per push")
        known = self.keys.nodes.get(peer)
        now = self.clock.now_ms()
        if known is None:
            await self._first_contact(peer, chain, cert_pem, cert_public, now)
            return
        try:
            steps, current = await self._verify_chain(peer, chain, known)
            if current != cert_public:
                raise await self._not_current(peer, cert_public)
        except LiaisonError as exc:
            await self._refused(peer, chain, cert_pem, exc, now)
            raise
        if not steps:
            return
        old_cert = (await self.store.node_certs()).get(peer)
        await self.store.keys.apply_key_changes(peer, steps, now=now, grace_ms=self.grace_ms,
                                                cert=cert_pem, public=current,
                                                old_cert=old_cert)
        self.keys.nodes[peer] = current
        log.info("key.changes_accepted", peer=peer, serial=steps[-1].change.serial)

    async def _refused(self, peer: str, chain: list[bytes], cert_pem: bytes,
                       exc: LiaisonError, now: int) -> None:
        """Audit a refused key change once per distinct push: a node retrying the same
        refused push (its sender backs off and retries) or flooding it adds no row. Bytes
        that do not even decode are the federation's windowed ``peer.refused``."""
        if isinstance(exc, Malformed | LimitExceeded):
            return
        digest = hashlib.sha256(b"".join([*chain, cert_pem, exc.code.encode()])).digest()
        if self._last_refused.get(peer) == digest:
            return
        self._last_refused[peer] = digest
        log.warning("key.change_refused", peer=peer, code=exc.code)
        refused = None
        for raw in chain:
            if not await self._held(peer, raw):
                refused = raw
                break
        await self.store.keys.key_change_refused(peer, refused, code=exc.code,
                                                 reason=exc.detail, now=now)

    async def _held(self, peer: str, raw: bytes) -> bool:
        try:
            return await self.store.keys.key_change_held(peer, body_hash(raw))
        except LiaisonError:
            return False

    async def _verify_chain(self, peer: str, chain: list[bytes], known: bytes
                            ) -> tuple[list[AppliedChange], bytes]:
        """The changes not held yet, each verified against the key the one before left."""
        current = known
        last = await self.store.keys.key_change_serial(peer)
        cosigners = await unrevoked_cosigners(self.store.keys, self.cosigner_keys(peer),
                                              now=self.clock.now_ms())
        steps: list[AppliedChange] = []
        for raw in chain:
            digest = body_hash(raw)
            if await self.store.keys.key_change_held(peer, digest):
                continue
            verified = key_change.verify(raw, subject_key=current,
                                         cosigner_keys=cosigners,
                                         threshold=self.threshold, last_serial=last,
                                         expected_node=peer)
            change = verified.change
            old_public = None
            if change.kind is key_change.Kind.REVOKE:
                owner = await self.store.keys.key_owner(change.old_key_id)
                if owner not in (None, node_principal(peer)):
                    raise Forbidden(f"key {change.old_key_id.hex()} is not a key of {peer}")
            else:
                assert change.new_signing_public is not None  # checked by verify
                old_public, current = current, change.new_signing_public
            steps.append(AppliedChange(change, raw, digest, old_public, verified.counted))
            last = change.serial
        return steps, current

    async def _not_current(self, peer: str, cert_public: bytes) -> LiaisonError:
        key_id = crypto.signing_key_id(cert_public)
        serial = await self.store.keys.key_introduced(peer, key_id)
        if serial is not None or await self.store.keys.key_owner(key_id) == node_principal(
                peer):
            return SerialReplayed(f"the signing certificate of {peer} presents key "
                                  f"{key_id.hex()}, which a later key change replaced: "
                                  "a replayed certificate")
        return CosignThreshold(f"the signing certificate of {peer} presents key "
                               f"{key_id.hex()}, which no key change co-signed by "
                               f"{self.threshold} other national nodes introduces")

    async def _first_contact(self, peer: str, chain: list[bytes], cert_pem: bytes,
                             cert_public: bytes, now: int) -> None:
        """No key of ``peer`` held yet: its CA-certified key is taken (as it always was at
        first contact), and the change that introduced that key, if the peer sent it, sets
        where its serials continue from."""
        new_id = crypto.signing_key_id(cert_public)
        for raw in reversed(chain):
            try:
                statement = key_change.decode(raw)
            except LiaisonError:
                continue
            if statement.node == peer and statement.change.new_key_id == new_id:
                await self.store.keys.baseline_key_change(
                    peer, raw, body_hash(raw), statement.change.serial,
                    statement.change.kind.value, now=now)
                break
        await self.store.put_node_key(peer, cert_pem, cert_public)
        self.keys.nodes[peer] = cert_public
