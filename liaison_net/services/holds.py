"""Four-eyes release at a node (issue 19): which envelopes wait, who may decide them, and
the check every receiving node makes on the approval that travels with one.

    origin:      intake asks ``plan``: held (unit, until) or not; the hold is written with
                 the acceptance, and the unit's approvers are notified from that commit
    decide:      an approver posts a signed statement (``core/approval``): verified as a
                 peer would, then checked against this node's approver list; approve
                 releases (inbox rows, hops, evidence) in one write, reject ends it
    expiry:      ``run`` ends holds past ``[four_eyes] hold_hours`` with a notice
    destination: ``carried`` verifies the approval beside a received envelope; a covered
                 envelope without a valid one is refused (``policy.four_eyes_*``)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from liaison_net.clock import Clock
from liaison_net.config import FourEyesConfig
from liaison_net.core import approval as four_eyes
from liaison_net.core.audit import detail
from liaison_net.core.effects import Effect, destination_evidence, notice
from liaison_net.core.envelope import Envelope, read_frame
from liaison_net.core.ids import id_to_text
from liaison_net.core.limits import Limits
from liaison_net.core.sealing import verify_frame
from liaison_net.errors import (
    Forbidden,
    KeysChanged,
    LiaisonError,
    PolicyRefused,
    Revoked,
    Unavailable,
    UnknownKey,
)
from liaison_net.store.hold_store import Hold, HoldPlan
from liaison_net.store.node_store import NodeStore

log = structlog.get_logger("liaison.four_eyes")

HOUR_MS = 3_600_000
#: Checks made again when keys changed before the release's write (as intake's).
KEYS_TRIES = 3


class HoldDesk:
    def __init__(self, *, node_id: str, store: NodeStore, config: FourEyesConfig,
                 clock: Clock, wake: Callable[[str], None], limits: Limits) -> None:
        self.node_id = node_id
        self.limits = limits
        self.store = store
        self.config = config
        self.clock = clock
        self._wake = wake

    # --- origin ---------------------------------------------------------------------------

    def plan(self, envelope: Envelope, now: int) -> HoldPlan | None:
        """Held, and until when, if this node's policy covers ``envelope``. Refused when no
        one but the sender could ever approve it (it would only expire)."""
        h = envelope.header
        if not self.config.enabled:
            return None
        unit = h.tag.owner.unit
        if not self.config.policy_for(unit).covers(h):
            return None
        if not self.config.approvers.get(unit, frozenset()) - {h.sender}:
            raise PolicyRefused(
                f"four-eyes: unit {unit!r:.40} has no approver besides the sender on node "
                f"{self.node_id} ([four_eyes.approvers])", code="policy.four_eyes_no_approver")
        return HoldPlan(unit, min(now + int(self.config.hold_hours * HOUR_MS), h.expires))

    def held_notice(self, envelope: Envelope, plan: HoldPlan) -> Effect:
        """The unit's approvers learn, from the accepting commit, that one waits."""
        h = envelope.header
        approvers = sorted(self.config.approvers.get(plan.unit, frozenset()) - {h.sender})
        return notice("four-eyes-waiting", recipients=approvers, ref=h.id,
                      content={"envelope": h.id, "sender": h.sender, "unit": plan.unit,
                               "tlp": h.tag.tlp.value, "handling": h.tag.handling.value,
                               "until": plan.until, "node": self.node_id})

    # --- decisions --------------------------------------------------------------------------

    async def waiting(self, officer: str) -> list[tuple[Hold, str]]:
        """What waits that ``officer`` sent (role ``sender``) or may decide (``approver``)."""
        units = self.config.units_of(officer)
        return [(hold, "sender" if hold.sender == officer else "approver")
                for hold in await self.store.holds.waiting(units=units, sender=officer)]

    async def envelope_for(self, officer: str, envelope_id: bytes) -> bytes:
        """The held envelope's bytes, for one who may decide it (the client verifies them
        and signs over their digest)."""
        hold = await self._hold_for(officer, envelope_id)
        return await self.store.envelope_bytes(hold.envelope_id)

    async def _hold_for(self, officer: str, envelope_id: bytes) -> Hold:
        hold = await self.store.holds.get(envelope_id)
        if hold is None or (officer != hold.sender
                            and hold.unit not in self.config.units_of(officer)):
            raise Forbidden(f"no envelope {id_to_text(envelope_id)} waits for your decision")
        return hold

    async def decide(self, officer: str, envelope_id: bytes, statement: bytes) -> Hold:
        """An approver's signed decision about a held envelope: verified, checked against
        this node's approver list, then carried out in one write (audited, notices owed).
        A card, key or revocation written between the checks and the release's write: the
        checks are made again (at most ``KEYS_TRIES`` times, then ``keys_changed``)."""
        now = self.clock.now_ms()
        try:
            for attempt in range(1, KEYS_TRIES + 1):
                try:
                    decided, released = await self._decide(
                        officer, envelope_id, statement, now, keys=self.store.keys_stamp())
                    break
                except KeysChanged:
                    if attempt == KEYS_TRIES:
                        raise
        except LiaisonError as exc:
            await self.store.audit(now=now, event="envelope.approval_refused", actor=officer,
                                   audit_detail=detail(code=exc.code, reason=exc.detail[:200]),
                                   envelope_id=envelope_id)
            raise
        if not released:
            return decided
        if decided.local and self.store.on_inbox is not None:
            self.store.on_inbox(decided.local)
        for node in decided.remote:
            self._wake(node)
        log.info("four_eyes.approved", envelope_id=id_to_text(envelope_id), by=officer)
        return decided

    async def _decide(self, officer: str, envelope_id: bytes, statement: bytes, now: int,
                      *, keys: int) -> tuple[Hold, bool]:
        """``decide``'s checks and write, against the keys of stamp ``keys``: the hold, and
        whether it was released (approved) rather than rejected."""
        hold = await self._hold_for(officer, envelope_id)
        approval = await self._verified(statement, now)
        if approval.approver != officer:
            raise Forbidden(f"logged in as {officer}, statement signed by "
                            f"{approval.approver}")
        if approval.sender == officer or hold.sender == officer:
            raise PolicyRefused("an envelope cannot be approved or rejected by its own "
                                "sender", code="policy.four_eyes_self")
        if hold.unit not in self.config.units_of(officer):
            raise PolicyRefused(f"{officer} is not an approver of unit {hold.unit!r:.40}",
                                code="policy.four_eyes_not_approver")
        raw = await self.store.envelope_bytes(envelope_id)
        frame = read_frame(raw, self.limits)  # verified again: the sender not revoked
        envelope = verify_frame(frame, await self.store.keys.signer(
            frame.signer_key_id, now=None), now=None, limits=self.limits)
        if approval.decision is four_eyes.Decision.REJECT:
            if approval.envelope != envelope_id:
                raise PolicyRefused("the rejection is for another envelope",
                                    code="policy.four_eyes_mismatch")
            decided = await self.store.holds.reject(envelope_id, approver=officer,
                                                    reason=approval.reason, now=now,
                                                    keys_as_of=keys)
            log.info("four_eyes.rejected", envelope_id=id_to_text(envelope_id), by=officer)
            return decided, False
        four_eyes.check_release(approval, envelope, raw)
        released = await self.store.holds.approve(
            envelope_id, approver=officer, statement=statement, now=now,
            effects=destination_evidence(envelope.header, local=hold.local, at=now),
            keys_as_of=keys)
        return released, True

    async def _verified(self, statement: bytes, now: int) -> four_eyes.Approval:
        """The statement under the approver's current card key, not revoked."""
        approver = four_eyes.claimed_approver(statement)
        keys = await self.store.officer_keys(approver)
        revoked = await self.store.keys.officer_revocation(approver, now=now)
        if revoked is not None:
            raise Revoked(f"approver {approver} is revoked: {revoked}")
        return four_eyes.verify(statement,
                                lambda _o: keys[0] if keys is not None else None)

    # --- destination ------------------------------------------------------------------------

    async def carried(self, envelope: Envelope, statement: bytes | None,
                      now: int) -> tuple[str, bytes] | None:
        """The approval beside a received envelope, checked (approver, statement); None if
        none came and none is needed. A covered envelope without one is refused, as is
        any approval that does not release exactly this envelope."""
        h = envelope.header
        if statement is None:
            if self.config.enabled and self.config.policy.covers(h):
                raise PolicyRefused(
                    f"four-eyes: a {h.tag.tlp.value}/{h.tag.handling.value} envelope "
                    "arrived without a second officer's approval",
                    code="policy.four_eyes_missing")
            return None
        try:
            approval = await self._verified(statement, now)
        except UnknownKey:
            raise  # the approver's card may still be on its way: the sender retries
        except LiaisonError as exc:
            raise PolicyRefused(f"four-eyes: the approval does not verify ({exc.code}: "
                                f"{exc.detail[:100]})", code="policy.four_eyes_invalid") from None
        four_eyes.check_release(approval, envelope, envelope.to_bytes())
        return approval.approver, statement

    # --- expiry -----------------------------------------------------------------------------

    async def run(self) -> None:
        """End holds past their time, every ``[four_eyes] sweep_s`` (supervised)."""
        while True:
            try:
                expired = await self.store.holds.expire_due(self.clock.now_ms())
                if expired:
                    log.info("four_eyes.expired", envelopes=expired)
            except Unavailable as exc:
                log.warning("four_eyes.sweep_failed", reason=exc.detail[:200])
            await asyncio.sleep(self.config.sweep_s)
