"""The officer's side of delivery evidence, without a network: the ledger that makes each
step go out once, and the sender's judgement of one evidence envelope."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from liaison_net.client.directory import Directory
from liaison_net.client.evidence_trail import Ledger, check_evidence
from liaison_net.client.keystore import Keystore
from liaison_net.core import crypto, sealing
from liaison_net.core.almanac import Almanac
from liaison_net.core.envelope import Envelope, Kind
from liaison_net.core.evidence import (
    Statement,
    Step,
    evidence_tag,
    make,
    sign_statement,
)
from liaison_net.core.identity import OfficerCard
from liaison_net.core.ids import id_to_text, new_envelope_id
from liaison_net.core.limits import DAY_MS, HOUR_MS
from tests.core.factories import NOW, Officer, seal_from

JAN, MARIE, CLAUDE = Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("lu/cschmit")
BE_NODE = crypto.generate_signing_key()
LATER = NOW + 60_000


def card(o: Officer) -> OfficerCard:
    return OfficerCard(o.id, o.id, "liaison officer", o.signing.public, o.encryption.public,
                       1, NOW - DAY_MS, NOW + 365 * DAY_MS, Almanac())


DIRECTORY = Directory(node_keys={"be": BE_NODE.public},
                      cards={o.id: card(o) for o in (JAN, MARIE, CLAUDE)})
JAN_KEYS = Keystore(JAN.id, JAN.signing, (JAN.encryption,), "https://127.0.0.1:1", b"")


def carrier(author: Officer, statement: bytes, ref: bytes, to: Officer = JAN) -> Envelope:
    return sealing.seal(sender=author.id, sender_key=author.signing, recipients=[to.recipient],
                        tag=evidence_tag(own_node=author.id[:2], sender_node="nl", now=NOW),
                        plaintext=statement, now=LATER, expires=LATER + HOUR_MS,
                        kind=Kind.EVIDENCE, ref=ref)


# --- the sender's judgement ------------------------------------------------------------------


def test_a_genuine_opened_statement_is_believed_with_its_signer() -> None:
    alert = seal_from(JAN, [MARIE]).header
    raw = sign_statement(make(Step.OPENED, alert, at=LATER, recipient=MARIE.id), MARIE.signing)
    judged = check_evidence(carrier(MARIE, raw, alert.id).to_bytes(), alert, JAN_KEYS,
                            DIRECTORY, now=LATER)
    assert judged.error is None and judged.attested is not None
    assert judged.attested.signer.principal == MARIE.id and judged.statement_bytes == raw


def test_evidence_about_another_envelope_or_not_for_me_is_refused() -> None:
    alert = seal_from(JAN, [MARIE]).header
    raw = sign_statement(make(Step.OPENED, alert, at=LATER, recipient=MARIE.id), MARIE.signing)
    other = new_envelope_id(NOW, b"\x02" * 10)
    wrong_ref = check_evidence(carrier(MARIE, raw, other).to_bytes(), alert, JAN_KEYS,
                               DIRECTORY, now=LATER)
    assert wrong_ref.error is not None and "not an evidence envelope about" in wrong_ref.error
    for_claude = check_evidence(carrier(MARIE, raw, alert.id, to=CLAUDE).to_bytes(), alert,
                                JAN_KEYS, DIRECTORY, now=LATER)
    assert for_claude.error is not None and for_claude.error.startswith("cannot_open")


def test_a_colleagues_claim_is_refused_and_kept_for_inspection() -> None:
    alert = seal_from(JAN, [MARIE, CLAUDE]).header
    raw = sign_statement(Statement(Step.OPENED, alert.id, (MARIE.id,), CLAUDE.id, LATER),
                         CLAUDE.signing)
    judged = check_evidence(carrier(CLAUDE, raw, alert.id).to_bytes(), alert, JAN_KEYS,
                            DIRECTORY, now=LATER)
    assert judged.attested is None and judged.statement_bytes == raw
    assert judged.error == ("forbidden: lu/cschmit cannot attest opened for be/mpeeters: "
                            "only be/mpeeters can")
    assert judged.carrier is not None


def test_a_tampered_carrier_is_refused_before_anything_is_opened() -> None:
    alert = seal_from(JAN, [MARIE]).header
    raw = bytearray(carrier(MARIE, sign_statement(
        make(Step.OPENED, alert, at=LATER, recipient=MARIE.id), MARIE.signing),
        alert.id).to_bytes())
    raw[-70] ^= 1
    judged = check_evidence(bytes(raw), alert, JAN_KEYS, DIRECTORY, now=LATER)
    assert judged.error is not None and judged.carrier is None
    assert judged.statement_bytes is None


# --- the recipient's ledger ------------------------------------------------------------------


def test_the_ledger_remembers_attested_steps_across_runs(tmp_path: Path) -> None:
    keystore = tmp_path / "marie.keystore"
    eid = id_to_text(new_envelope_id(NOW, b"\x01" * 10))
    ledger = Ledger.beside(keystore)
    assert not ledger.done(eid, Step.DELIVERED)
    ledger.record(eid, Step.DELIVERED)
    ledger.save(now=NOW)
    again = Ledger.beside(keystore)
    assert again.done(eid, Step.DELIVERED) and not again.done(eid, Step.OPENED)
    assert stat.S_IMODE(again.path.stat().st_mode) == 0o600
    assert again.path.name == "marie.keystore.evidence"


def test_the_ledger_forgets_old_envelopes_and_survives_a_damaged_file(tmp_path: Path) -> None:
    keystore = tmp_path / "marie.keystore"
    old = id_to_text(new_envelope_id(NOW - 200 * DAY_MS, b"\x01" * 10))
    new = id_to_text(new_envelope_id(NOW, b"\x01" * 10))
    ledger = Ledger.beside(keystore)
    ledger.record(old, Step.OPENED)
    ledger.record(new, Step.OPENED)
    ledger.save(now=NOW)
    assert set(json.loads(ledger.path.read_text())["attested"]) == {new}
    ledger.path.write_bytes(b"\x00not json")
    assert Ledger.beside(keystore).attested == {}
