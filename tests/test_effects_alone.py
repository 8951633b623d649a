"""The effect drain's fallback when one of a pass's issued envelopes is refused as the pass's
write stores them (``EffectDrain.drain_once``: each then completed alone, so that one cannot
hold the others back): those writes, awaited one after another, do not ride. Riding, each
would wait up to ``RIDE_S`` (0.25 s) for a plain write on a quiet node: a pass of 256
effects stalled a minute (review16e). On a real SQLite file, the refusal a real trigger."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from liaison_net.clock import ManualClock
from tests.core.factories import NOW, Officer, seal_from
from tests.test_effects import ALICE, BOB, LOCAL, _accept_at_origin, _count, _drain, _enrol, _open

CAROL = Officer("nl/cjansen")


async def test_the_items_completed_alone_after_a_refusal_do_not_ride(tmp_path: Path) -> None:
    path = tmp_path / "nl.db"
    store = await _open(path)
    try:
        senders = [ALICE, LOCAL, CAROL]  # one sender each: three evidence envelopes
        for officer in senders:
            await _enrol(store, officer)
        envs = [seal_from(officer, [BOB], b"alert") for officer in senders]
        for env in envs:
            assert not await _accept_at_origin(store, env, [])
        with sqlite3.connect(path) as db:
            db.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON envelopes "
                       f"WHEN NEW.kind = 'evidence' AND NEW.ref = x'{envs[1].id.hex()}' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        store.db.ride_s = 0.01  # the pass's own write rides, and must not wait long here
        riders_before = store.db.rider_commits
        assert await _drain(store, ManualClock(NOW + 1000)).drain_once() == 3
        # The pass's write (a rider: three envelopes), refused whole; then each alone, as a
        # plain write of its own.
        assert store.db.rider_commits == riders_before + 1
        for env, stored in zip(envs, (1, 0, 1), strict=True):
            assert _count(path, "SELECT COUNT(*) FROM envelopes WHERE kind = 'evidence' "
                                f"AND ref = x'{env.id.hex()}'") == stored
    finally:
        await store.close()
