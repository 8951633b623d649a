"""A batch submit across two real nodes (nl, be): one request, one answer per envelope.

Jan (NL) hands his node eight envelopes in one `POST /api/v1/envelopes/batch`: five good
alerts to Marie (BE), a copy of the first, bytes that are no envelope, and an alert Piet
(NL) signed. Each gets its own answer (accepted, duplicate, refused with its code); only the
five are stored and reach Marie; the audit has one entry per decision, as for single
submits; and Jan's client verifies an "accepted" for each of the five from the ONE batch
statement his node issued for them, and a "relayed" for each from the one BE issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest

from liaison_net.client import evidence_trail
from liaison_net.client.session import MSGPACK_MEDIA_TYPE, SubmitResult
from liaison_net.core import codec
from liaison_net.core.evidence import Step
from liaison_net.errors import Forbidden, LiaisonError, Malformed
from tests.integration.network import Network, audit_rows, last_audit_seq
from tests.integration.officers import enrol, now_ms
from tests.integration.test_first_alert import directory_with, inbox_ids
from tests.waits import PATIENCE_S

pytestmark = pytest.mark.slow


async def test_a_batch_answers_each_envelope_stores_only_the_accepted_and_covers_each_with_evidence(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan, piet, marie = enrol(net, "nl/jdevries"), enrol(net, "nl/pbakker"), \
        enrol(net, "be/mpeeters")
    for nid in ("nl", "be"):
        net.start(nid)
    async with jan.session() as node:
        directory = await directory_with(node, jan.id, piet.id, marie.id)
        good = [jan.seal(directory, [marie.id], f"alert {i}".encode()) for i in range(5)]
        piets = piet.seal(directory, [marie.id], b"signed by Piet, handed over by Jan")
        batch = [good[0], good[1], b"\x93not an envelope", good[2], piets, good[0], good[3],
                 good[4]]
        seq = last_audit_seq(net, "nl")
        results = await node.submit_many(
            [e if isinstance(e, bytes) else e.to_bytes() for e in batch])

    assert [r.status if isinstance(r, SubmitResult) else type(r) for r in results] == [
        "accepted", "accepted", Malformed, "accepted", Forbidden, "duplicate", "accepted",
        "accepted"]
    assert [r.id for r in results if isinstance(r, SubmitResult)] == [
        good[0].header.id_text, good[1].header.id_text, good[2].header.id_text,
        good[0].header.id_text, good[3].header.id_text, good[4].header.id_text]
    refused = [r for r in results if isinstance(r, LiaisonError)]
    assert "logged in as nl/jdevries, envelope signed by nl/pbakker" in refused[1].detail

    # The audit: one accepted per stored envelope, one refusal each (as single submits).
    rows = [r for r in audit_rows(net, "nl", after=seq) if r.event.startswith("envelope.")]
    accepted = [r.envelope_id for r in rows if r.event == "envelope.accepted"]
    assert sorted(accepted) == sorted(e.id for e in good)  # the copy is not audited again
    refusals = [(r.envelope_id, r.detail["code"]) for r in rows
                if r.event == "envelope.refused"]
    assert sorted(refusals, key=str) == sorted(
        [(None, "malformed"), (piets.id, "forbidden")], key=str)

    # Only the accepted reach Marie.
    async with marie.session() as node:
        assert sorted(await inbox_ids(node, 5)) == sorted(e.header.id_text for e in good)

    # Jan's client: a verified "accepted" for each of the five, from one batch envelope.
    carriers = set()
    async with jan.session() as node:
        for env in good:
            async with asyncio.timeout(PATIENCE_S):
                while True:
                    report = await evidence_trail.status_report(
                        node, jan.keystore, env.header.id_text, now=now_ms())
                    done = [c for c in report.evidence if c.attested is not None
                            and c.attested.statement.step is Step.ACCEPTED]
                    if done:
                        break
                    await asyncio.sleep(0.2)
            assert not report.warnings, report.warnings
            assert report.progress[0].accepted is not None
            assert done[0].attested is not None
            assert done[0].attested.statement.envelope == env.id
            assert done[0].attested.signer.principal == "nl/node"
            assert done[0].statement_bytes is not None
            assert isinstance(codec.unpack(done[0].statement_bytes, what="proof",
                                           max_bytes=1 << 20), dict)  # a batch's proof
            carriers.add(done[0].carrier)
    assert len(carriers) == 1

    # BE's "relayed" for the five: batch statements too, issued at BE and found at NL for
    # each through the ids BE's transaction named beside it (covers); Jan's client
    # verifies each proof. BE stores a transaction in one write (intake.receive_many), so
    # one transaction's five are one drain pass and one batch; but NL's sender may have
    # split them over two transactions (a read before the batch's commit was seen). So:
    # every one is covered, and batches (not one statement each) do.
    relayed_carriers: list[str] = []
    async with jan.session() as node:
        for env in good:
            async with asyncio.timeout(PATIENCE_S):
                while True:
                    report = await evidence_trail.status_report(
                        node, jan.keystore, env.header.id_text, now=now_ms())
                    relayed = [c for c in report.evidence if c.attested is not None
                               and c.attested.statement.step is Step.RELAYED]
                    if relayed:
                        break
                    await asyncio.sleep(0.2)
            assert not report.warnings, report.warnings
            assert relayed[0].attested is not None
            assert relayed[0].attested.statement.envelope == env.id
            assert relayed[0].attested.statement.recipients == (marie.id,)
            assert relayed[0].attested.signer.principal == "be/node"
            assert relayed[0].statement_bytes is not None
            if isinstance(codec.unpack(relayed[0].statement_bytes, what="proof",
                                       max_bytes=1 << 20), dict):  # a batch's proof
                relayed_carriers.append(relayed[0].carrier)
    assert max((relayed_carriers.count(c) for c in relayed_carriers), default=0) >= 2, \
        relayed_carriers
    with contextlib.closing(sqlite3.connect(net.database("nl"), timeout=10)) as db:
        assert db.execute("SELECT COUNT(*) FROM envelopes WHERE id = ?",
                          (piets.id,)).fetchone()[0] == 0

    # The batch itself is bounded: 1 to 256 envelopes, as a list of bytes.
    async with jan.session() as node:
        for envelopes, code in (([], "limit_exceeded"), ([b"x"] * 257, "limit_exceeded"),
                                ("not a list", "malformed")):
            with pytest.raises(LiaisonError) as refused_batch:
                await node._call("POST", "/api/v1/envelopes/batch",  # past the client's own
                                 data=codec.pack({"envelopes": envelopes}),  # bound checks
                                 content_type=MSGPACK_MEDIA_TYPE)
            assert refused_batch.value.code == code
