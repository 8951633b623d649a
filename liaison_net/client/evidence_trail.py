"""The officer's side of delivery evidence (the statements are ``core.evidence``).

As a recipient: when `liaison inbox` lists an envelope, the client fetches it, verifies it
under the directory and signs "delivered"; when `liaison read` has opened it, "opened".
Each statement is sealed for the original sender (kind ``evidence``, ``ref`` = the
envelope) and handed to the home node like any envelope. A small ledger next to the
keystore remembers what this machine has attested, so each step goes out once however
often the inbox is listed; should it be lost, a step goes out twice, which the sender
counts once (at its earliest time).

As a sender: `liaison status ID` asks the home node for the evidence about ID in the
inbox, and believes a statement only after verifying the envelope that carried it,
opening it, verifying the statement's own signature under the directory and checking that
its maker may attest that step (``core.evidence.check_about``). The node can withhold
evidence but cannot forge it; what fails is reported, never counted as progress.

Evidence is a by-product: failing to send it never fails the command that triggered it.
It goes out over the command's own session when given one (``node=``), so `liaison read`
is one TLS session, and with the command's ``LocalCache`` the directory is the cached one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from liaison_net.client.directory import Directory
from liaison_net.client.keystore import Keystore
from liaison_net.client.local_cache import LocalCache, verified_directory
from liaison_net.client.session import EnvelopeStatus, InboxEntry, NodeSession
from liaison_net.core import sealing
from liaison_net.core.envelope import Envelope, Header, Kind
from liaison_net.core.evidence import (
    EVIDENCE_TTL_MS,
    Attested,
    Progress,
    Step,
    check_about,
    evidence_tag,
    make,
    progress,
    sign_statement,
    wants_evidence,
)
from liaison_net.core.evidence_batch import evidence_about, is_batch, verify_evidence
from liaison_net.core.ids import NODE_HANDLE, envelope_id_time_ms, id_from_text, node_of
from liaison_net.core.limits import DAY_MS
from liaison_net.core.policy import Action, Request, require
from liaison_net.errors import Forbidden, LiaisonError, Malformed, NodeFault

LEDGER_SUFFIX = ".evidence"
LEDGER_KEEP_MS = 90 * DAY_MS  # an envelope read again after this may be attested again
MAX_LEDGER_BYTES = 8 * 1024 * 1024
MAX_ATTESTED_PER_RUN = 100  # a long unread inbox is attested over several listings
_NO_EVIDENCE_KINDS = (Kind.EVIDENCE.value, Kind.NOTICE.value)


# --- the ledger: what this machine has attested ----------------------------------------------


class Ledger:
    """``{envelope id: [steps]}`` in a JSON file beside the keystore (0600)."""

    def __init__(self, path: Path, attested: dict[str, set[str]]) -> None:
        self.path = path
        self.attested = attested

    @classmethod
    def beside(cls, keystore_path: Path) -> Ledger:
        """The keystore's ledger; an unreadable one starts afresh (at worst a step is
        attested twice, which is harmless)."""
        path = keystore_path.with_name(keystore_path.name + LEDGER_SUFFIX)
        attested: dict[str, set[str]] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            with path.open("rb") as fh:
                value = json.loads(fh.read(MAX_LEDGER_BYTES))
            attested = {str(k): {str(s) for s in v}
                        for k, v in value["attested"].items() if isinstance(v, list)}
        return cls(path, attested)

    def done(self, envelope_id: str, step: Step) -> bool:
        return step.value in self.attested.get(envelope_id, set())

    def record(self, envelope_id: str, step: Step) -> None:
        self.attested.setdefault(envelope_id, set()).add(step.value)

    def save(self, *, now: int) -> None:
        """Write atomically, forgetting envelopes created before ``LEDGER_KEEP_MS``."""
        keep = {}
        for envelope_id, steps in self.attested.items():
            with contextlib.suppress(Malformed):
                if envelope_id_time_ms(id_from_text(envelope_id)) >= now - LEDGER_KEEP_MS:
                    keep[envelope_id] = sorted(steps)
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({"v": 1, "attested": keep}, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


# --- as a recipient: attest ------------------------------------------------------------------


async def attest(node: NodeSession, ks: Keystore, directory: Directory, envelope: Envelope,
                 steps: Sequence[Step], ledger: Ledger, *, now: int) -> list[Step]:
    """Sign each of ``steps`` this machine has not yet attested for ``envelope`` (verified,
    addressed to this officer), seal it for the sender and submit it; the steps sent."""
    todo = seal_attestations(ks, directory, envelope, steps, ledger, now=now)
    for step, carrier in todo:
        await node.submit(carrier.to_bytes())
        ledger.record(envelope.header.id_text, step)
    return [step for step, _ in todo]


def seal_attestations(ks: Keystore, directory: Directory, envelope: Envelope,
                      steps: Sequence[Step], ledger: Ledger, *,
                      now: int) -> list[tuple[Step, Envelope]]:
    """The evidence envelopes ``attest`` would submit, sealed, nothing sent."""
    h = envelope.header
    if not wants_evidence(h):
        return []
    todo = [step for step in steps if not ledger.done(h.id_text, step)]
    if not todo:
        return []
    sender = directory.recipient(h.sender, now=now)
    tag = evidence_tag(own_node=ks.node, sender_node=node_of(h.sender), now=now)
    require(tag, Request(Action.SEND, now, actor_node=ks.node, target_node=node_of(h.sender)))
    return [(step, sealing.seal(
        sender=ks.officer, sender_key=ks.signing, recipients=[sender], tag=tag,
        plaintext=sign_statement(make(step, h, recipient=ks.officer, at=now), ks.signing),
        now=now, expires=now + EVIDENCE_TTL_MS, kind=Kind.EVIDENCE, ref=h.id))
        for step in todo]


def _wants_delivered(entry: InboxEntry, ledger: Ledger) -> bool:
    return (entry.kind not in _NO_EVIDENCE_KINDS and not entry.sender.endswith("/" + NODE_HANDLE)
            and entry.purged is None and not ledger.done(entry.id, Step.DELIVERED))


@contextlib.asynccontextmanager
async def _session(ks: Keystore, node: NodeSession | None,
                   cache: LocalCache | None) -> AsyncIterator[NodeSession]:
    """The caller's open session, else one of our own."""
    if node is not None:
        yield node
        return
    async with NodeSession(ks, cache=cache) as own:
        yield own


async def attest_listed(ks: Keystore, keystore_path: Path, entries: Sequence[InboxEntry], *,
                        now: int, node: NodeSession | None = None,
                        cache: LocalCache | None = None) -> list[str]:
    """"delivered" for each listed envelope not attested yet: fetched and verified first,
    so the statement means the sender's own envelope reached this machine. Warnings out."""
    ledger = Ledger.beside(keystore_path)
    todo = [e for e in entries if _wants_delivered(e, ledger)][:MAX_ATTESTED_PER_RUN]
    if not todo:
        return []
    warnings: list[str] = []
    try:
        async with _session(ks, node, cache) as session:
            directory, _ = await verified_directory(
                session, cache, ks, now=datetime.fromtimestamp(now / 1000, UTC),
                wanted={e.sender for e in todo})
            sealed: list[tuple[str, Envelope]] = []
            for entry in todo:
                try:
                    envelope = sealing.verify(await session.fetch(entry.id),
                                              directory.lookup(), now=None)
                    if envelope.header.id_text != entry.id:
                        raise Forbidden("the node answered with a different envelope")
                    if ks.officer not in (r.officer for r in envelope.header.recipients):
                        raise Forbidden(f"{ks.officer} is not a recipient")
                    sealed += [(entry.id, carrier) for _, carrier in seal_attestations(
                        ks, directory, envelope, [Step.DELIVERED], ledger, now=now)]
                except NodeFault:
                    raise
                except LiaisonError as exc:
                    warnings.append(f"no delivery evidence for {entry.id}: {exc.detail}")
            # One request (and one commit at the node) for everything listed.
            if sealed:
                results = await session.submit_many([c.to_bytes() for _, c in sealed])
                for (entry_id, _), result in zip(sealed, results, strict=True):
                    if isinstance(result, LiaisonError):
                        warnings.append(f"no delivery evidence for {entry_id}: "
                                        f"{result.detail}")
                    else:
                        ledger.record(entry_id, Step.DELIVERED)
    except LiaisonError as exc:
        warnings.append(f"delivery evidence not sent: {exc.detail}")
    _save(ledger, now, warnings)
    return warnings


async def attest_opened(ks: Keystore, keystore_path: Path, envelope: Envelope,
                        directory: Directory, *, now: int,
                        node: NodeSession | None = None,
                        cache: LocalCache | None = None) -> list[str]:
    """"delivered" (if not yet) and "opened" for an envelope `read` has just shown."""
    ledger = Ledger.beside(keystore_path)
    h = envelope.header
    if not wants_evidence(h) or all(ledger.done(h.id_text, s)
                                    for s in (Step.DELIVERED, Step.OPENED)):
        return []
    warnings: list[str] = []
    try:
        async with _session(ks, node, cache) as session:
            await attest(session, ks, directory, envelope, [Step.DELIVERED, Step.OPENED],
                         ledger, now=now)
    except LiaisonError as exc:
        warnings.append(f"no read evidence for {h.id_text}: {exc.detail}")
    _save(ledger, now, warnings)
    return warnings


def _save(ledger: Ledger, now: int, warnings: list[str]) -> None:
    try:
        ledger.save(now=now)
    except OSError as exc:
        warnings.append(f"cannot write {ledger.path}: {exc.strerror or exc}; evidence may "
                        "be sent again")


# --- as the sender: collect and verify -------------------------------------------------------


@dataclass(frozen=True)
class CheckedEvidence:
    """One evidence envelope as the sender's client judged it."""

    carrier: str | None  # the evidence envelope's id, once its signature verified
    # the signed statement, once opened (of a batch: the proof for this envelope alone,
    # ``evidence_batch.verify_evidence`` verifies either)
    statement_bytes: bytes | None
    attested: Attested | None  # set only when everything verified
    error: str | None  # why it is refused, otherwise


def check_evidence(raw: bytes, original: Header, ks: Keystore, directory: Directory, *,
                   now: int) -> CheckedEvidence:
    """Verify one evidence envelope about ``original`` end to end, or say why not."""
    carrier_id: str | None = None
    statement: bytes | None = None
    try:
        carrier = sealing.verify(raw, directory.lookup(), now=None)
        carrier_id = carrier.header.id_text
        if carrier.header.kind is not Kind.EVIDENCE:
            raise Malformed("not an evidence envelope")
        content = sealing.open_envelope(carrier, ks.officer, ks.encryption_keys)
        # A batch names one envelope in its header but covers many: its proof for this
        # one decides. A single statement must be carried about this very envelope.
        if not is_batch(content) and carrier.header.ref != original.id:
            raise Malformed("not an evidence envelope about this envelope")
        statement = evidence_about(content, original.id)
        attested = verify_evidence(statement, directory.lookup())
        check_about(attested.statement, envelope_id=original.id, sender=original.sender,
                    recipients=[r.officer for r in original.recipients], now=now)
    except LiaisonError as exc:
        return CheckedEvidence(carrier_id, statement, None, f"{exc.code}: {exc.detail}")
    return CheckedEvidence(carrier_id, statement, attested, None)


@dataclass(frozen=True)
class StatusReport:
    status: EnvelopeStatus  # the home node's own view: hops and local inboxes
    sender: str | None  # of the envelope, once verified
    recipients: tuple[str, ...]
    progress: list[Progress]  # per recipient, for the sender only
    evidence: list[CheckedEvidence]
    warnings: list[str]


async def status_report(node: NodeSession, ks: Keystore, envelope_id: str, *,
                        now: int) -> StatusReport:
    """The node's status of ``envelope_id`` and, for its sender, the verified evidence."""
    status = await node.status(envelope_id)
    directory = await node.directory(now=datetime.fromtimestamp(now / 1000, UTC))
    warnings = list(directory.warnings)
    try:
        original = sealing.verify(await node.fetch(status.id), directory.lookup(), now=None)
        if original.header.id_text != status.id:
            raise Forbidden("the node answered with a different envelope")
    except LiaisonError as exc:
        warnings.append(f"cannot verify envelope {status.id}, so no evidence about it was "
                        f"checked: {exc.detail}")
        return StatusReport(status, None, (), [], [], warnings)
    h = original.header
    recipients = tuple(r.officer for r in h.recipients)
    if h.sender != ks.officer:
        return StatusReport(status, h.sender, recipients, [], [], warnings)
    checked = [check_evidence(raw, h, ks, directory, now=now)
               for raw in await node.evidence(status.id)]
    for c in checked:
        if c.error is not None:
            warnings.append(f"evidence {c.carrier or '(unverifiable envelope)'} refused: "
                            f"{c.error}")
    hops = {peer: (hop.state, hop.reason) for peer, hop in status.hops.items()}
    rows = progress(recipients, [c.attested.statement for c in checked if c.attested], hops)
    return StatusReport(status, h.sender, recipients, rows, checked, warnings)
