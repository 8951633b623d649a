"""Versioned schema migrations for a node's SQLite database.

Each entry of MIGRATIONS moves the schema up one version and runs in the same transaction
as the version bump, so a crash mid-migration leaves the previous version intact. Never
edit a released migration: append a new one.
"""

from __future__ import annotations

#: Migration 19's codes, frozen here as it was released (``core/audit.py`` holds the
#: registries, which may only grow: a test checks they start with these).
EVENT_CODES_19: tuple[tuple[str, str], ...] = (
    ("1", "envelope.accepted"), ("2", "envelope.relayed"),
    ("3", "envelope.delivered_to_inbox"), ("4", "evidence.issued"), ("5", "notice.issued"),
    ("6", "envelope.refused"), ("7", "envelope.refused_by_peer"), ("8", "envelope.expired"),
    ("9", "envelope.purged"), ("10", "envelope.consulted"), ("11", "envelope.acknowledged"),
    ("12", "envelope.held"), ("13", "envelope.approved"), ("14", "envelope.recalled"),
    ("15", "envelope.rejected"), ("16", "signal.matched"), ("17", "request.answered"),
    ("18", "login.failed"),
)
DETAIL_TOKENS_19: tuple[str, ...] = (
    '"handling":"H0"', '"handling":', '"inboxes":[]', '"inboxes":', '"layer":"origin"',
    '"layer":"destination"', '"layer":', '"purpose":"relayed evidence"', '"purpose":',
    '"recipients":', '"tlp":"AMBER"', '"tlp":"GREEN"', '"tlp":"RED"', '"tlp":"CLEAR"',
    '"tlp":', '"to":', '"peer":', '"kind":"accepted"', '"kind":"relayed"', '"kind":',
    '"ref":', '"code":',
)
_MARK = "\x1f"


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _read_detail_19(column: str) -> str:
    """SQL reading a stored detail back (``core.audit.detail_text``): the codes replaced
    by their pieces after the mark; a doubled mark removed. Control characters appear in
    the statement as they are (SQLite and PostgreSQL take them in a literal)."""
    coded = f"substr({column}, 2)"
    for i, token in enumerate(DETAIL_TOKENS_19):
        coded = f"replace({coded}, {_sql_text(chr(i + 1))}, {_sql_text(token)})"
    return (f"CASE WHEN substr({column}, 1, 2) = {_sql_text(_MARK * 2)} "
            f"THEN substr({column}, 3) WHEN substr({column}, 1, 1) = {_sql_text(_MARK)} "
            f"THEN {coded} ELSE {column} END")


_MIGRATION_19 = f"""
    CREATE TABLE audit_events (
        code TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    INSERT INTO audit_events (code, name) VALUES
        {", ".join(f"({_sql_text(c)}, {_sql_text(n)})" for c, n in EVENT_CODES_19)};
    UPDATE audit SET event = (SELECT code FROM audit_events WHERE name = audit.event)
        WHERE event IN (SELECT name FROM audit_events);
    CREATE VIEW audit_named AS
        SELECT a.seq, a.at, COALESCE(n.name, a.event) AS event, a.envelope_id, a.actor,
               {_read_detail_19("a.detail")} AS detail, a.hash
        FROM audit a LEFT JOIN audit_events n ON n.code = a.event
"""

MIGRATIONS: list[str] = [
    # 1: envelopes, hops (per-destination outbox), inboxes, peers, directory, audit chain.
    """
    CREATE TABLE envelopes (
        id BLOB PRIMARY KEY,
        raw BLOB NOT NULL,
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,
        precedence INTEGER NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        retain_until INTEGER NOT NULL,
        received INTEGER NOT NULL,
        purged INTEGER
    );  -- a rowid table: envelope rows (1-2 KiB) would spill into overflow pages otherwise

    CREATE TABLE hops (
        node TEXT NOT NULL,
        envelope_id BLOB NOT NULL,
        state TEXT NOT NULL,
        precedence INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        reason TEXT,
        PRIMARY KEY (node, envelope_id)
    ) WITHOUT ROWID;
    CREATE INDEX hops_queue ON hops (node, state, precedence DESC, envelope_id);
    CREATE INDEX hops_expiry ON hops (state, expires);

    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        officer TEXT NOT NULL,
        envelope_id BLOB NOT NULL,
        relayed INTEGER NOT NULL,
        acked INTEGER,
        UNIQUE (officer, envelope_id)
    );

    CREATE TABLE peers (
        node TEXT PRIMARY KEY,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        directory_cursor INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE node_keys (
        node TEXT PRIMARY KEY,
        signing_cert BLOB NOT NULL,
        signing_public BLOB NOT NULL
    );

    CREATE TABLE directory (
        officer TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        version INTEGER NOT NULL,
        signing_key_id BLOB NOT NULL,
        signing_public BLOB NOT NULL,
        encryption_public BLOB NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        valid_until INTEGER NOT NULL,
        card BLOB NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX directory_key ON directory (signing_key_id);
    CREATE INDEX directory_seq ON directory (seq);

    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        envelope_id BLOB,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    """,
    # 2: key rotation and revocation: superseded keys in their grace period, revocations,
    # and a per-peer outbox that re-sends each revocation until the peer acknowledges it.
    """
    CREATE TABLE key_history (
        signing_key_id BLOB PRIMARY KEY,
        principal TEXT NOT NULL,
        signing_public BLOB NOT NULL,
        grace_until INTEGER NOT NULL,
        card BLOB
    ) WITHOUT ROWID;

    CREATE TABLE revocations (
        key_id BLOB PRIMARY KEY,
        principal TEXT NOT NULL,
        subject TEXT NOT NULL,
        effective INTEGER NOT NULL,
        reason TEXT NOT NULL,
        authority TEXT NOT NULL,
        statement BLOB NOT NULL,
        received INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE revocation_outbox (
        node TEXT NOT NULL,
        key_id BLOB NOT NULL,
        PRIMARY KEY (node, key_id)
    ) WITHOUT ROWID;
    """,
    # 3: early-warning signals: what each node holds (as origin or as a destination desk),
    # their subject pseudonyms for hit/no-hit matching, and the matches already notified.
    """
    CREATE TABLE signals (
        envelope_id BLOB PRIMARY KEY,
        role TEXT NOT NULL,
        origin TEXT NOT NULL,
        sender TEXT NOT NULL,
        severity INTEGER NOT NULL,
        received INTEGER NOT NULL,
        deadline INTEGER,
        acked INTEGER,
        acked_by TEXT,
        escalated INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX signals_due ON signals (role, acked, escalated, deadline);

    CREATE TABLE pseudonyms (
        value BLOB NOT NULL,
        key_id BLOB NOT NULL,
        envelope_id BLOB NOT NULL,
        origin TEXT NOT NULL,
        PRIMARY KEY (value, envelope_id)
    ) WITHOUT ROWID;

    CREATE TABLE signal_matches (
        earlier BLOB NOT NULL,
        later BLOB NOT NULL,
        notified INTEGER NOT NULL,
        PRIMARY KEY (earlier, later)
    ) WITHOUT ROWID;

    CREATE TABLE pseudonym_evaluations (
        officer TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX pseudonym_evaluations_by ON pseudonym_evaluations (officer, at);
    """,
    # 4: requests under Directive (EU) 2023/977: due times, answers, escalations.
    """
    CREATE TABLE requests (
        envelope_id BLOB NOT NULL,
        officer TEXT NOT NULL,
        role TEXT NOT NULL,
        sender TEXT NOT NULL,
        urgency TEXT NOT NULL,
        due INTEGER NOT NULL,
        answered INTEGER,
        reply_id BLOB,
        escalated INTEGER,
        PRIMARY KEY (envelope_id, officer)
    ) WITHOUT ROWID;
    CREATE INDEX requests_due ON requests (role, answered, escalated, due);
    """,
    # 5: the envelope another refers to (header ``ref``), so the sender's client collects
    # the delivery evidence about one envelope without reading its whole inbox.
    """
    ALTER TABLE envelopes ADD COLUMN ref BLOB;
    CREATE INDEX envelopes_ref ON envelopes (ref, kind) WHERE ref IS NOT NULL;
    """,
    # 6: retention: the purge sweep finds what is due (retain_until passed, not yet purged)
    # without scanning every envelope.
    """
    CREATE INDEX envelopes_retention ON envelopes (retain_until) WHERE purged IS NULL;
    """,
    # 7: consents used: a consent allows exactly one forward; the forward that used it is
    # recorded with its acceptance (core/tagflow.py, step 5).
    """
    CREATE TABLE consents_used (
        digest BLOB PRIMARY KEY,
        envelope_id BLOB NOT NULL,
        used INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 8: effects: what a decision obliges the node to issue (evidence, notices, receipts),
    # written in the decision's transaction and deleted by the drain in the transaction
    # that stores what it issued (core/effects.py, a transactional outbox).
    """
    CREATE TABLE effects (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        envelope_id BLOB NOT NULL,
        args BLOB NOT NULL,
        created INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX effects_due ON effects (next_attempt, id);
    """,
    # 9: the CA certificate of a node signing key a rotation replaced, kept with it for its
    # grace period: clients verify cards still signed by that key (a peer's re-issued cards
    # arrive after its new certificate) and know the key a later revocation names.
    """
    ALTER TABLE key_history ADD COLUMN cert BLOB;
    """,
    # 10: batch evidence: one evidence envelope (``carrier``) covers many envelopes, but its
    # header ``ref`` names only one; this index finds it for each (core/evidence_batch.py).
    """
    CREATE TABLE evidence_covers (
        envelope_id BLOB NOT NULL,
        carrier BLOB NOT NULL,
        PRIMARY KEY (envelope_id, carrier)
    ) WITHOUT ROWID;
    """,
    # 11: bytes on disk (issue 16). An audit entry's ``prev`` is the hash of the entry before
    # it, so it is not stored twice: readers take it from that row (``audit_store.linked``);
    # the hash still covers it, so a deleted, edited or reordered row still breaks the
    # chain. The outbox indexes hold only queued hops: a delivered, refused or expired hop
    # is never looked up by them again, and leaves them (its row stays, for the status).
    # ``forget_when_delivered``: an envelope this node issued (evidence, a notice) for no
    # officer of its own, with the number of its hops not yet delivered; at 0 it is done
    # with and deleted (``EnvelopeStore._forget_if_done``).
    """
    ALTER TABLE audit DROP COLUMN prev;
    DROP INDEX hops_queue;
    DROP INDEX hops_expiry;
    CREATE INDEX hops_queue ON hops (node, precedence DESC, envelope_id)
        WHERE state = 'queued';
    CREATE INDEX hops_expiry ON hops (expires) WHERE state = 'queued';

    CREATE TABLE forget_when_delivered (
        envelope_id BLOB PRIMARY KEY,
        hops INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 12: a relayed batch leaves the destination for the sender's node with the ids it
    # covers beside it (federation ``covers``): read by carrier when it is sent.
    """
    CREATE INDEX evidence_covers_carrier ON evidence_covers (carrier);
    """,
    # 13: restriction updates (core/restriction.py). ``restrictions``: each owner's update
    # this node applied, about the owner's ``original``, with the update's tag (a recall:
    # the original's) in wire form; ``restricted``: which envelopes here it applied to (the
    # original, forwards of it), so a later forward is checked under it and a reader is
    # told (forwards of an envelope are found by ``envelopes_ref``, migration 5).
    """
    CREATE TABLE restrictions (
        update_id BLOB PRIMARY KEY,
        original BLOB NOT NULL,
        action TEXT NOT NULL,
        issuer TEXT NOT NULL,
        issued INTEGER NOT NULL,
        tag BLOB NOT NULL,
        applied INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX restrictions_original ON restrictions (original);
    CREATE TABLE restricted (
        envelope_id BLOB NOT NULL,
        update_id BLOB NOT NULL,
        PRIMARY KEY (envelope_id, update_id)
    ) WITHOUT ROWID;
    """,
    # 14: several workers for one node (issue 17). A lease names one job that only one
    # worker may do at a time (``sender:<peer>``): who holds it, until when, and a fencing
    # token that grows at each takeover; the writes done under a lease check the token
    # (``lease_store``). ``key_epoch`` grows in every write that changes a card, a node
    # key, a superseded key or a revocation, so every worker knows when to drop the keys
    # it caches (``key_epoch``). Plain SQL, the same on PostgreSQL.
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE TABLE key_epoch (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        epoch INTEGER NOT NULL
    );
    INSERT INTO key_epoch (one, epoch) VALUES (1, 0);
    """,
    # 15: the audit log as a witnessed Merkle log (issue 18, core/checkpoint.py). Signed
    # checkpoints of this node's log (``leaves``: the leaf hashes it added, so `audit
    # verify` can name the first entry a rewrite changed) and of each peer's log that this
    # node witnessed; the witnesses' cosignatures of each; and the witness's alarms (a split
    # view, a rollback, an inconsistent log), shown on /healthz.
    """
    CREATE TABLE checkpoints (
        node TEXT NOT NULL,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        at INTEGER NOT NULL,
        signed BLOB NOT NULL,
        leaves BLOB,
        received INTEGER NOT NULL,
        PRIMARY KEY (node, size)
    ) WITHOUT ROWID;
    CREATE TABLE cosignatures (
        node TEXT NOT NULL,
        size INTEGER NOT NULL,
        witness TEXT NOT NULL,
        cosignature BLOB NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (node, size, witness)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoint_alarms (
        id INTEGER PRIMARY KEY,
        node TEXT NOT NULL,
        verdict TEXT NOT NULL,
        size INTEGER NOT NULL,
        at INTEGER NOT NULL
    );
    """,
    # 16: node key changes co-signed by the other national nodes (core/key_change.py): the
    # chain of each peer's accepted changes (serials strictly sequential; ``body_hash``
    # recognises a change already held when the peer pushes its chain again), and the
    # latest change a peer presented that was refused, for `liaison admin keys pending`.
    """
    CREATE TABLE node_key_changes (
        node TEXT NOT NULL,
        serial INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body_hash BLOB NOT NULL,
        statement BLOB NOT NULL,
        received INTEGER NOT NULL,
        PRIMARY KEY (node, serial)
    ) WITHOUT ROWID;
    CREATE TABLE key_changes_refused (
        node TEXT PRIMARY KEY,
        statement BLOB NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        received INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 17: four-eyes (issue 19). ``holds``: an envelope accepted at its origin but held until
    # a second officer of the sender's unit approves it; ``local`` / ``remote`` (JSON lists)
    # are the inbox rows and hops its release writes. ``approvals``: the approver's signed
    # statement, stored at the origin on release and at each node that received it, so it
    # travels with the envelope (federation ``approvals``, the officer API). ``admin_ops``:
    # an administrator's enrolment, revocation or rotation waiting for a second one
    # (``[admin] four_eyes``).
    """
    CREATE TABLE holds (
        envelope_id BLOB PRIMARY KEY,
        sender TEXT NOT NULL,
        unit TEXT NOT NULL,
        local TEXT NOT NULL,
        remote TEXT NOT NULL,
        held INTEGER NOT NULL,
        until INTEGER NOT NULL,
        state TEXT NOT NULL,
        decided INTEGER,
        decided_by TEXT,
        reason TEXT
    ) WITHOUT ROWID;
    CREATE INDEX holds_waiting ON holds (until) WHERE state = 'held';

    CREATE TABLE approvals (
        envelope_id BLOB PRIMARY KEY,
        approver TEXT NOT NULL,
        statement BLOB NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE admin_ops (
        op TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        args BLOB NOT NULL,
        proposer TEXT NOT NULL,
        proposed INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        state TEXT NOT NULL,
        decided_by TEXT,
        decided INTEGER,
        outcome TEXT
    ) WITHOUT ROWID;
    """,
    # 18: bytes on disk at the origin (issue 16). ``evidence_covers`` is read by envelope
    # (an inbox's carriers for it, ``evidence_for``); the carriers this node sends to a
    # peer are read by carrier (their ``covers``, sent beside them, and forgotten with
    # them): those rows move to ``outgoing_covers``, keyed that way, and the index that
    # kept every cover row a second time by carrier goes. A carrier no inbox here holds
    # is never read by envelope, so its rows leave ``evidence_covers``; the others name
    # their carrier by its row in the inbox that holds it (``inbox_seq``, AUTOINCREMENT:
    # never reused) instead of its 16-byte id, the row ``evidence_for`` reads anyway.
    """
    CREATE TABLE outgoing_covers (
        carrier BLOB NOT NULL,
        envelope_id BLOB NOT NULL,
        PRIMARY KEY (carrier, envelope_id)
    ) WITHOUT ROWID;
    INSERT INTO outgoing_covers (carrier, envelope_id)
        SELECT carrier, envelope_id FROM evidence_covers
        WHERE carrier IN (SELECT envelope_id FROM forget_when_delivered)
           OR carrier IN (SELECT envelope_id FROM hops WHERE state = 'queued');
    CREATE TABLE inbox_covers (
        envelope_id BLOB NOT NULL,
        inbox_seq INTEGER NOT NULL,
        PRIMARY KEY (envelope_id, inbox_seq)
    ) WITHOUT ROWID;
    INSERT INTO inbox_covers (envelope_id, inbox_seq)
        SELECT c.envelope_id, i.seq FROM evidence_covers c JOIN inbox i
        ON i.envelope_id = c.carrier;
    DROP TABLE evidence_covers;
    ALTER TABLE inbox_covers RENAME TO evidence_covers;
    """,
    # 19: bytes on disk at the origin (issue 16). The audit table spells its most frequent
    # events by a short code (``core/audit.py`` ``EVENT_CODES``, append only) instead of a
    # name of 15-27 characters in every row, and a new row's detail its most frequent
    # pieces (``DETAIL_TOKENS``: JSON keys, a key with its usual value) by one control
    # character each, after a mark; the hash covers the name and the text, so rows read
    # back and verify as before, and older rows (details stored as they are) still do.
    # ``audit_events`` says which name each code stands for; ``audit_named`` is the table
    # as it reads (names, details in full), for whoever queries it with SQL.
    _MIGRATION_19,
    # 20: bytes on disk at the origin (issue 16). An own checkpoint no longer keeps every
    # leaf it added (each an audit row's hash again, 32 bytes per entry) but ``kept``:
    # the roots of its complete blocks of 64 leaves, of its tail subtrees and a 2-byte mark
    # per leaf (``core/kept_leaves.py``), about 3 bytes per entry, which still hash to the
    # signed root and name the first entry a rewrite changed. Rows written before keep
    # their ``leaves``: they are the only record of what those entries were, and read on
    # as the same log.
    """
    ALTER TABLE checkpoints ADD COLUMN kept BLOB;
    """,
    # 21: an officer's inbox read by page (``InboxStore.inbox``: ``officer = ? AND seq > ?
    # ORDER BY seq LIMIT ?``, and the bench's sink) had only the UNIQUE (officer,
    # envelope_id) index to go by: SQLite read every row of the officer's and sorted them
    # for each page, 3.1 ms of CPU a page at 60,000 rows and growing with the inbox. By
    # (officer, seq) a page is a range of the index. And an envelope's local deliveries
    # (``local_deliveries``, every officer's ``status`` request) scanned the whole inbox:
    # by envelope_id they are a lookup.
    """
    CREATE INDEX inbox_by_officer ON inbox (officer, seq);
    CREATE INDEX inbox_by_envelope ON inbox (envelope_id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
