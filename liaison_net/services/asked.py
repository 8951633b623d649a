"""The key facts one federation transaction's envelopes ask for, each asked of the store once.

Why: at a catch-up a transaction's 250 envelopes share one sender key and one recipient, and
each asked the store for the same signer and the same officer's keys (the key cache's lock,
its LRU move and two coroutines per lookup, docs/performance.md, lane dest16).

What is kept: only what was found. An unknown key or officer is asked again at each
envelope (so is a revoked key, which raises each time). The transaction's envelopes are
decided together at one ``now``; one answer for all of them is the answer each would have
had at the first lookup, as if they had been decided in that instant. Lives for one
``Intake.receive_many``, never longer: the next transaction asks again.
"""

from __future__ import annotations

from liaison_net.core.sealing import SignerKey
from liaison_net.store.node_store import NodeStore


class Asked:
    """One transaction's lookups (``receive_many``), at its ``now``."""

    __slots__ = ("_keys", "_now", "_signers", "_store")

    def __init__(self, store: NodeStore, now: int) -> None:
        self._store = store
        self._now = now
        self._signers: dict[bytes, SignerKey] = {}
        self._keys: dict[str, tuple[bytes, bytes]] = {}

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


#: Per kind; a transaction holds at most 1,024 envelopes, so this bound is never the limit
#: in practice, only a guarantee.
_MAX_KEPT = 4096
