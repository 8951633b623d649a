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

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liaison_net.clock import Clock
from liaison_net.config import AdminConfig
from liaison_net.core import admin_ops, crypto, rotation
from liaison_net.core.identity import (
    OfficerCard,
    issue_card,
    verify_card,
    verify_enrolment_request,
)
from liaison_net.core.ids import check_node_id, check_officer_id
from liaison_net.core.limits import DAY_MS
from liaison_net.errors import (
    Conflict,
    CosignThreshold,
    Forbidden,
    LiaisonError,
    Malformed,
    NotFound,
)
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
                 wake: Callable[[], None] = lambda: None,
                 admin: AdminConfig | None = None) -> None:
        self.clock = clock
        self.admin = admin or AdminConfig()  # [admin] four_eyes: two administrators
        self.node_id = node_id
        self.store = store
        self.signing_key = signing_key  # a function: the running node may rotate its key
        self.peers = peers
        self.card_validity_days = card_validity_days
        self.wake = wake  # the senders: push the new card or revocation now

    def _one_admin_allowed(self, what: str) -> None:
        if self.admin.four_eyes:
            raise Forbidden(f"[admin] four_eyes is on at node {self.node_id}: {what} needs two "
                            "administrators; propose it with `liaison admin propose ...` and "
                            "have a second administrator run `liaison admin approve OP`")

    async def enrol(self, raw_request: bytes) -> tuple[OfficerCard, bytes]:
        """Issue and store the next card version for the officer the request names."""
        self._one_admin_allowed("enrolment")
        return await self._enrol(raw_request)

    async def _enrol(self, raw_request: bytes) -> tuple[OfficerCard, bytes]:
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
        self._one_admin_allowed("revocation")
        return await self._revoke(subject, principal, reason, key_id)

    async def _revoke(self, subject: rotation.Subject, principal: str, reason: str,
                      key_id: bytes | None) -> RevokeResult:
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

    # --- four-eyes administration ([admin] four_eyes, core/admin_ops) ----------------------

    async def propose(self, raw: bytes) -> dict[str, Any]:
        """Record an administrator's signed proposal; a second one approves it by its id."""
        op = admin_ops.verify_op(raw, self.admin.admins)
        if op.node != self.node_id:
            raise Forbidden(f"the operation is for node {op.node}, not {self.node_id}")
        if op.kind == "enrol-officer":
            verify_enrolment_request(op.args)  # refused now, not at the approval
        elif op.kind == "revoke":
            _revocation_args(op.args)
        now = self.clock.now_ms()
        expires = now + int(self.admin.pending_hours * 3_600_000)
        oid = admin_ops.op_id(raw)
        await self.store.admin_ops.propose(oid, kind=op.kind, raw=raw, proposer=op.admin,
                                           now=now, expires=expires)
        return {"op": oid, "kind": op.kind, "proposer": op.admin, "expires": expires}

    async def approve(self, raw_approval: bytes) -> dict[str, Any]:
        """A second administrator's approval: verified, checked (another person), then the
        operation is carried out and recorded as done (or failed, with why)."""
        now = self.clock.now_ms()
        approval = admin_ops.verify_approval(raw_approval, self.admin.admins)
        pending = await self.store.admin_ops.check_pending(approval.op, now)
        op = admin_ops.verify_op(pending.raw, self.admin.admins)  # the proposer still listed
        try:
            admin_ops.check_second(op, approval, self.admin.admins)
        except LiaisonError as exc:
            await self.store.admin_ops.refused(approval.op, by=approval.admin, code=exc.code,
                                               now=now)
            raise
        result: dict[str, Any] = {"op": approval.op, "kind": op.kind, "proposer": op.admin,
                                  "approver": approval.admin}
        try:
            if op.kind == "enrol-officer":
                card, raw_card = await self._enrol(op.args)
                result.update(officer=card.officer, version=card.version,
                              card=raw_card.hex())
                outcome = f"enrolled {card.officer} (card version {card.version})"
            elif op.kind == "revoke":
                subject, principal, reason, key_id = _revocation_args(op.args)
                done = await self._revoke(subject, principal, reason, key_id)
                result.update(key_id=done.key_id.hex(), principal=done.principal,
                              pushed_to=done.pushed_to)
                outcome = f"revoked key {done.key_id.hex()} of {done.principal}"
            else:  # rotate-key: files under the CA, rotated by the approving CLI next
                outcome = "approved: the approving administrator rotates the node key"
        except LiaisonError as exc:
            await self.store.admin_ops.decide(approval.op, by=approval.admin, state="failed",
                                              outcome=f"{exc.code}: {exc.detail}", now=now)
            raise
        await self.store.admin_ops.decide(approval.op, by=approval.admin, state="done",
                                          outcome=outcome, now=now)
        return {**result, "outcome": outcome}


def _revocation_args(args: bytes) -> tuple[rotation.Subject, str, str, bytes | None]:
    """The JSON a revoke proposal carries: subject, principal, reason, key_id (hex|null)."""
    try:
        d = json.loads(args)
        subject = rotation.Subject(d["subject"])
        principal, reason, key_hex = d["principal"], d["reason"], d["key_id"]
        key_id = bytes.fromhex(key_hex) if key_hex is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Malformed("a revoke proposal carries subject, principal, reason and key_id"
                        ) from None
    if not isinstance(principal, str) or not isinstance(reason, str):
        raise Malformed("a revoke proposal's principal and reason are text")
    return subject, principal, reason, key_id
