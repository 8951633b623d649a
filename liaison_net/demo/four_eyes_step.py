"""The demo's four-eyes step (issue 19): a TLP:RED alert from NL is held at its origin
until a second officer of NL's liaison unit (the NL duty desk, an approver in the demo's
``[four_eyes]``) approves it, then reaches BE with the approval, which Marie's client
verifies against the approver's card, as `liaison read` does."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from liaison_net.client import approvals
from liaison_net.core.content import Content
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.core.signals import desk_of
from liaison_net.demo.story_types import BENELUX, JAN, MARIE, POLL_S, Sent, make_tag, now_ms

if TYPE_CHECKING:
    from liaison_net.demo.scenario import Story

#: What the demo network's nodes put in their config: each node's duty desk approves for
#: its liaison unit (each node keeps only its own officers of the list).
FOUR_EYES_SECTION = {"sweep_s": 1.0, "hold_hours": 24,
                     "approvers": {"liaison": [desk_of(n) for n in ("be", "nl", "lu", "de-nw")]}}


async def held_red_alert(story: Story) -> str:
    """Send, see it held (not in BE's inbox, "held" in the sender's status), approve as the
    NL desk, then deliver, read and verify the approval at BE. A note for the step."""
    from liaison_net.demo.scenario import Alert  # the story's own type, imported on use

    alert = Alert(
        "R1 RED four-eyes", JAN, (MARIE,),
        make_tag("nl", handling=Handling.H2, tlp=Tlp.RED, share_with=BENELUX,
                 purpose="protection of a covert source"),
        Content(subject="RED: source reports a planned handover at Hazeldonk",
                text="For Marie only. Handover planned Thursday night; do not act on it "
                     "without calling me first."))
    sent: Sent = await story.send(alert)
    status = await story.sessions[JAN].status(sent.id)
    held = status.hold is not None and status.hold.state == "held" and not status.hops
    story.outcome.check("a TLP:RED alert is held at its origin until a second officer "
                        "approves", held)
    desk = desk_of("nl")
    session = story.sessions[desk]
    envelope = approvals.review(await session.held_envelope(sent.id), story.directories[desk],
                                sent.id)
    statement = approvals.decision(envelope, approver=desk,
                                   key=story.officer(desk).keystore.signing, approve=True,
                                   reason="", now=now_ms())
    await session.decide_held(sent.id, statement)
    await story.deliver_and_read([sent])
    carried = await story.sessions[MARIE].approval(sent.id)
    while carried is None:  # delivered: its approval came in the same transaction
        await asyncio.sleep(POLL_S)
        carried = await story.sessions[MARIE].approval(sent.id)
    released = approvals.released_by(envelope, carried, story.directories[MARIE])
    ok = released is not None and released.approver == desk and released.sender == JAN
    story.outcome.check("the RED alert reaches BE with a second officer's approval, verified "
                        "by the reader", ok)
    return f"{sent.id} held, approved by {desk}, read by {MARIE} with the approval verified"
