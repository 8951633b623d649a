"""A peer's federation transaction at the destination (``Intake.receive_many``), on a real
SQLite file: each envelope decided on its own and answered in order, every admitted one
stored in ONE write (one commit, so one drain pass and one "relayed" batch for the
sender), a refused one audited and stopping none."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

from liaison_net.clock import ManualClock
from liaison_net.config import EffectsConfig, RequestConfig
from liaison_net.core import crypto
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import EnrolmentRequest, issue_card, verify_card
from liaison_net.core.limits import DAY_MS, DEFAULT_LIMITS
from liaison_net.core.signals import SignalConfig
from liaison_net.errors import BadSignature, Forbidden, LiaisonError
from liaison_net.metrics import NodeMetrics
from liaison_net.services.effects import EffectDrain
from liaison_net.services.intake import Intake, Keys
from liaison_net.services.notices import Notifier
from liaison_net.services.request_desk import RequestDesk
from liaison_net.services.signal_desk import SignalDesk
from liaison_net.services.witness import Witness
from liaison_net.store.envelope_store import AcceptOutcome
from liaison_net.store.node_store import NodeStore
from tests.core.factories import NOW, Officer, seal_from
from tests.test_store_statements import _traced

ALICE, BOB, PIET = Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("lu/cschmit")
NL, BE, LU = (crypto.generate_signing_key() for _ in range(3))


async def _card(store: NodeStore, officer: Officer, node: str,
                key: crypto.SigningKeyPair) -> None:
    raw = issue_card(EnrolmentRequest(officer.id, "N", "r", officer.signing.public,
                                      officer.encryption.public, Almanac()),
                     node_id=node, node_key=key, version=1, now=NOW, valid_for_ms=DAY_MS)
    card = verify_card(raw, node_public=key.public, node_id=node, now=None)
    assert await store.put_card(card, raw, now=NOW, source=node)


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(sql).fetchone()[0])


async def test_a_transaction_is_one_write_each_envelope_decided_alone(tmp_path: Path) -> None:
    path = tmp_path / "be.db"
    store = NodeStore(path, "be")
    await store.open()
    try:
        for officer, node, key in ((ALICE, "nl", NL), (BOB, "be", BE), (PIET, "lu", LU)):
            await _card(store, officer, node, key)
        clock, metrics = ManualClock(NOW + 1000), NodeMetrics()
        intake = Intake(
            node_id="be", peers={"nl", "lu"}, store=store,
            keys=Keys(own=BE, nodes={"be": BE.public, "nl": NL.public, "lu": LU.public}),
            limits=DEFAULT_LIMITS, metrics=metrics,
            desk=SignalDesk(node_id="be", store=store, config=SignalConfig.default(),
                            metrics=metrics, clock=clock),
            requests=RequestDesk(node_id="be", store=store, config=RequestConfig(),
                                 clock=clock),
            witness=Witness(node_id="be"))
        good = [seal_from(ALICE, [BOB], f"alert {i}".encode()) for i in range(4)]
        forged = dataclasses.replace(seal_from(ALICE, [BOB], b"forged"),
                                     signature=bytes(64))
        others = seal_from(PIET, [BOB], b"Luxembourg's, relayed by nl")
        raws = [good[0].to_bytes(), forged.to_bytes(), good[1].to_bytes(),
                others.to_bytes(), good[2].to_bytes(), good[0].to_bytes(),
                good[3].to_bytes()]
        writes: list[object] = []
        write = store.db.write

        async def counted(fn: Any) -> Any:
            writes.append(fn)
            return await write(fn)

        store.db.write = counted  # type: ignore[method-assign]
        results = await intake.receive_many("nl", raws, NOW + 1000)
        store.db.write = write  # type: ignore[method-assign]
        # Two refusals' audit entries, and ONE write for the five admitted (a duplicate too).
        assert len(writes) == 3
        kinds = [type(r) if isinstance(r, LiaisonError) else r.duplicate for r in results]
        assert kinds == [False, BadSignature, False, Forbidden, False, True, False]
        assert _count(path, "SELECT COUNT(*) FROM inbox WHERE officer = 'be/mpeeters'") == 4
        assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = "
                            "'envelope.delivered_to_inbox'") == 4
        assert _count(path, "SELECT COUNT(*) FROM audit_named WHERE event = 'envelope.refused' "
                            "AND detail LIKE '%forbidden%'") == 1  # named, so audited
        assert (await store.verify_audit())[1] is None
        accepted = metrics.registry.get_sample_value
        assert accepted("liaison_accepted_total", {"source": "nl"}) == 4  # first copies
        # Their "relayed" evidence: all four in the one commit, so one drain pass signs
        # them as one batch, one envelope back to Alice's node.
        drain = EffectDrain(node_id="be", store=store, notifier=Notifier(
            node_id="be", store=store, signing_key=lambda: BE, wake=lambda _peer: None,
            clock=clock), config=EffectsConfig(), metrics=metrics, clock=clock)
        seen = await _traced(store)
        assert await drain.drain_once() == 4
        assert _count(path, "SELECT COUNT(*) FROM envelopes WHERE kind = 'evidence'") == 1
        assert _count(path, "SELECT COUNT(*) FROM outgoing_covers") == 4  # sent to nl
        # Its covered ids in one statement of four rows, not one statement each.
        assert sum(n for sql, n in seen.items() if "INTO outgoing_covers" in sql) == 1
        # One of one: ``receive`` answers alone, and raises its refusal.
        again = await intake.receive("nl", good[3].to_bytes(), NOW + 1000)
        assert isinstance(again, AcceptOutcome) and again.duplicate
    finally:
        await store.close()
