"""The node's part of delivery evidence (see ``core.evidence``): "accepted" at the origin,
"relayed" at the destination, each signed with the node's own key and sealed for the
sender as an envelope of kind ``evidence`` (``ref`` = the envelope), sent like any node
notice: into the sender's inbox here, or back through federation to the sender's node.

Evidence is owed, not best effort: Intake asks the ``Witness`` what a first copy owes
(a duplicate was attested the first time) and records it as effects in the very
transaction that accepts the envelope (``core/effects``). The effects drain
(``services/effects``) signs, seals and stores each one exactly once, after a crash too.
"""

from __future__ import annotations

from collections.abc import Sequence

from liaison_net.core.effects import Effect, destination_evidence, origin_evidence
from liaison_net.core.envelope import Envelope


class Witness:
    def __init__(self, *, node_id: str) -> None:
        self.node_id = node_id

    def accepted(self, envelope: Envelope, *, local: Sequence[str], now: int) -> list[Effect]:
        """At the origin: "accepted" for every recipient, and "relayed" for those whose
        inbox is on this node (their envelope is already there)."""
        return origin_evidence(envelope.header, local=local, at=now)

    def relayed(self, envelope: Envelope, *, local: Sequence[str], now: int) -> list[Effect]:
        """At the destination: "relayed" for each recipient whose inbox now holds it."""
        return destination_evidence(envelope.header, local=local, at=now)
