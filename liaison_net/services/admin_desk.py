"""What an administrator asks a node to write: enrol an officer, revoke a signing key.

The running node does this work itself, asked over its admin socket (``admin_api``), so
it stays the one writer of its store and can push the result to its peers at once. Only
when the node is not running does ``liaison admin`` build this desk on its own store
(the same ``NodeStore`` interface); the node then pushes the card or the revocation on
its next start, since both are queued in the store.

Enrolment turns an officer's request into a card signed with the node's signing key. The
request proves possession of the signing key; the administrator confirms the key ids with
the officer (printed on both sides) before the card is believed by anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from liaison_net.clock import Clock
from liaison_net.core import crypto, rotation
from liaison_net.core.identity import (
    OfficerCard,
    issue_card,
    verify_card,
    verify_enrolment_request,
)
from liaison_net.core.ids import check_node_id, check_officer_id
from liaison_net.core.limits import DAY_MS
from liaison_net.errors import Conflict, CosignThreshold, Forbidden, NotFound
from liaison_net.store.node_store import NodeStore


@dataclass(frozen=True)
class RevokeResult:
    key_id: bytes
    principal: str
    effective: int
    pushed_to: list[str]


class AdminDesk:
    def __init__(self, *, node_id: str, store: NodeStore,
                 signing_key: Callable[[], crypto.SigningKeyPair], peers: list[str],
                 card_validity_days: int, clock: Clock,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.clock = clock
        self.node_id = node_id
        self.store = store
        self.signing_key = signing_key  # a function: the running node may rotate its key
        self.peers = peers
        self.card_validity_days = card_validity_days
        self.wake = wake  # the senders: push the new card or revocation now

    async def enrol(self, raw_request: bytes) -> tuple[OfficerCard, bytes]:
        """Issue and store the next card version for the officer the request names."""
        request = verify_enrolment_request(raw_request)
        key = self.signing_key()
        holder = await self.store.keys.signer(crypto.signing_key_id(request.signing_public),
                                              now=None)
        if holder is not None and holder.principal != request.officer:
            raise Conflict(f"this signing key is already enrolled for {holder.principal}")
        now = self.clock.now_ms()
        version = await self.store.card_version(request.officer) + 1
        raw_card = issue_card(request, node_id=self.node_id, node_key=key, version=version,
                              now=now, valid_for_ms=self.card_validity_days * DAY_MS)
        card = verify_card(raw_card, node_public=key.public, node_id=self.node_id, now=now)
        if not await self.store.put_card(card, raw_card, now=now,
                                         source=f"admin@{self.node_id}"):
            raise Conflict(f"a newer card for {card.officer} was stored meanwhile; run again")
        self.wake()
        return card, raw_card

    async def revoke(self, subject: rotation.Subject, principal: str, reason: str,
                     key_id: bytes | None) -> RevokeResult:
        """Sign, store and queue for every peer a revocation of one of our principals' keys."""
        if subject is rotation.Subject.OFFICER:
            check_officer_id(principal)
        else:
            check_node_id(principal)
        if subject is rotation.Subject.NODE:
            raise CosignThreshold("a node key is revoked by a key change co-signed by the other "
                                  "national nodes: `liaison admin revoke node` prepares it")
        if rotation.authority_for(subject, principal) != self.node_id:
            raise Forbidden(f"node {self.node_id} has no authority over the keys of {principal}")
        node_key = self.signing_key()
        if key_id is None:
            keys = await self.store.officer_keys(principal)
            if keys is None:
                raise NotFound(f"{principal} is not in the directory of node {self.node_id}")
            key_id = crypto.signing_key_id(keys[0])
        now = self.clock.now_ms()
        statement = rotation.Revocation(subject, principal, key_id, reason, serial=now,
                                        effective=now, authority=self.node_id)
        raw = rotation.sign_revocation(statement, node_key)
        if not await self.store.keys.add_revocation(statement, raw, now=now,
                                                    forward_to=self.peers,
                                                    source=self.node_id):
            raise Conflict(f"key {key_id.hex()} is already revoked")
        self.wake()
        return RevokeResult(key_id, principal, now, list(self.peers))
