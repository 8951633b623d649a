"""What one federation transaction's envelopes share, each worked out once: the key facts they
ask the store for, and the audit detail of their delivery.

Why: at a catch-up a transaction's 250 envelopes share one sender key and one recipient, and
each asked the store for the same signer and the same officer's keys (the key cache's lock,
its LRU move and two coroutines per lookup, docs/performance.md, lane dest16).

What is kept: only what was found. An unknown key or officer is asked again at each
envelope (so is a revoked key, which raises each time). The transaction's envelopes are
decided together at one ``now``; one answer for all of them is the answer each would have
had at the first lookup, as if they had been decided in that instant. Lives for one
``Intake.receive_many``, never longer: the next transaction asks again.

The audit detail of a delivery (``art25.reception`` of a message that is not a forward) is
a function of the tag's justification and the inboxes alone: made once per distinct pair
(the JSON of each was 3-4 µs per envelope).
"""

from __future__ import annotations

from liaison_net.core import art25
from liaison_net.core.audit import detail
from liaison_net.core.envelope import Header
from liaison_net.core.sealing import SignerKey
from liaison_net.store.node_store import NodeStore


class Asked:
    """One transaction's lookups (``receive_many``), at its ``now``."""

    __slots__ = ("_details", "_keys", "_now", "_signers", "_store")

    def __init__(self, store: NodeStore, now: int) -> None:
        self._store = store
        self._now = now
        self._signers: dict[bytes, SignerKey] = {}
        self._keys: dict[str, tuple[bytes, bytes]] = {}
        self._details: dict[tuple[object, ...], str] = {}

    async def signer(self, key_id: bytes) -> SignerKey | None:
        """``store.keys.signer(key_id, now=now)``; raises ``Revoked`` as it does."""
        found = self._signers.get(key_id)
        if found is None:
            found = await self._store.keys.signer(key_id, now=self._now)
            if found is not None and len(self._signers) < _MAX_KEPT:
                self._signers[key_id] = found
        return found

    async def officer_keys(self, officer: str) -> tuple[bytes, bytes] | None:
        """``store.officer_keys(officer)``."""
        found = self._keys.get(officer)
        if found is None:
            found = await self._store.officer_keys(officer)
            if found is not None and len(self._keys) < _MAX_KEPT:
                self._keys[officer] = found
        return found

    def delivery_detail(self, peer: str, header: Header, local: list[str]) -> str:
        """The audit detail of delivering ``header`` (not a forward) from ``peer`` into the
        inboxes of ``local``: ``detail(layer, peer, recipients, **art25.reception(...))``."""
        key = (peer, tuple(local), tuple(art25.justification(header).values()))
        made = self._details.get(key)
        if made is None:
            made = detail(layer="destination", peer=peer, recipients=len(local),
                          **art25.reception(header, local, forward=False))
            if len(self._details) < _MAX_KEPT:
                self._details[key] = made
        return made


#: Per kind; a transaction holds at most 1,024 envelopes, so this bound is never the limit
#: in practice, only a guarantee.
_MAX_KEPT = 4096
