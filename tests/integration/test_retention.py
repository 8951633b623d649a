"""Retention: at the tag's retain_until both nodes purge the content, keep the signed tag
skeleton and audit the purge; reading then answers 410 purged, the inbox shows it purged."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sqlite3

import pytest

from liaison_net import errors
from liaison_net.core import content, sealing
from liaison_net.core.retention import decode_skeleton
from tests.integration.network import Network, audit_rows, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, benelux_tag, enrol, now_ms
from tests.integration.test_first_alert import directory_with, inbox_ids

SECRET_TEXT = "Suspect vehicle NL-42-XK crossed at Hazeldonk"
SECRET = content.encode(content.Content(subject="Hazeldonk", text=SECRET_TEXT))
# Generous on purpose: a loaded machine must still deliver before expires and read before
# retain_until (the test then waits for the purge, bounded, so a larger value costs time).
TTL_MS = 20_000  # expires: delivered well before
RETAIN_MS = 30_000  # retain_until: after expires (the tag requires it), read before it


def _stored(net: Network, nid: str, envelope_id: bytes) -> tuple[bytes, int | None]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        row = db.execute("SELECT raw, purged FROM envelopes WHERE id = ?",
                         (envelope_id,)).fetchone()
    assert row is not None, f"{nid} does not hold the envelope"
    return bytes(row[0]), row[1]


async def test_content_is_purged_at_retain_until_on_every_node(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"),
                              sections={"store": {"retention_sweep_s": 0.2}})
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("nl")
    net.start("be")
    pw = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
    async with jan.session() as nl, marie.session() as be:
        directory = await directory_with(nl, marie.id)
        await directory_with(be, jan.id)
        tag = dataclasses.replace(benelux_tag("nl"), retain_until=now_ms() + RETAIN_MS)
        env = jan.seal(directory, [marie.id], SECRET, tag=tag, ttl_ms=TTL_MS)
        assert env.header.expires <= tag.retain_until
        assert (await nl.submit(env.to_bytes())).status == "accepted"
        assert await inbox_ids(be, 1, timeout=TTL_MS / 1000) == [env.header.id_text]

        # Read once, before retain_until, with the officer's own CLI.
        shown = json.loads(run_cli("read", env.header.id_text, "--keystore", str(marie.path),
                                   "--json", env=pw).stdout)
        assert SECRET_TEXT in json.dumps(shown)
        for nid in ("nl", "be"):  # the content is there before the purge
            raw, purged = _stored(net, nid, env.id)
            assert purged is None and env.body.ciphertext in raw

        # After retain_until both nodes purge it (bounded polling on the column).
        wait_for(lambda: all(_stored(net, nid, env.id)[1] is not None for nid in ("nl", "be")),
                 timeout=RETAIN_MS / 1000 + 30, what="both nodes to purge the envelope")
        for nid in ("nl", "be"):
            raw, purged = _stored(net, nid, env.id)
            assert purged is not None and purged >= tag.retain_until
            assert env.body.ciphertext not in raw and env.body_bytes not in raw
            assert all(w not in raw for w in env.body.wraps)
            skeleton = decode_skeleton(raw)
            assert skeleton.header_bytes == env.header_bytes  # the signed tag is kept
            assert skeleton.signature == env.signature
            purges = [r for r in audit_rows(net, nid)
                      if r.event == "envelope.purged" and r.envelope_id == env.id]
            assert len(purges) == 1, (nid, purges)
            assert purges[0].detail["body_sha256"] == hashlib.sha256(env.body_bytes).hexdigest()
            assert purges[0].detail["retain_until"] == tag.retain_until
            verified = json.loads(run_cli("admin", "audit", "verify", "--config",
                                          str(net.nodes[nid].config), "--json").stdout)
            assert verified["ok"] is True, (nid, verified)

        # Reading answers the typed error, at the recipient's node and the sender's.
        for session in (be, nl):
            with pytest.raises(errors.Purged, match="retain_until"):
                await session.fetch(env.header.id_text)
            with pytest.raises(errors.Purged):
                await session.evidence(env.header.id_text)
        # A forward of the purged envelope is refused at the origin.
        forward = sealing.seal(
            sender=marie.id, sender_key=marie.keystore.signing,
            recipients=[(await directory_with(be, jan.id)).recipient(jan.id, now=now_ms())],
            tag=dataclasses.replace(tag, retain_until=now_ms() + RETAIN_MS),
            plaintext=SECRET, now=now_ms(), expires=now_ms() + TTL_MS, ref=env.id)
        with pytest.raises(errors.Purged):
            await be.submit(forward.to_bytes())

        # The inbox still lists it, marked purged, with the tag from the skeleton.
        entry = next(e for e in await be.inbox_all() if e.id == env.header.id_text)
        assert entry.purged is not None and entry.retain_until == tag.retain_until
        assert entry.tag is not None and entry.tag["owner"] == {"node": "nl", "unit": "liaison"}

    read = run_cli("read", env.header.id_text, "--keystore", str(marie.path), env=pw,
                   check=False)
    assert read.returncode == 2, read
    lines = read.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: purged: "), read.stderr
    assert "retain_until" in lines[0]
    listed = json.loads(run_cli("inbox", "--all", "--json", "--keystore", str(marie.path),
                                env=pw).stdout)
    mine = [i for i in listed if i["id"] == env.header.id_text]
    assert len(mine) == 1 and mine[0]["purged"] is not None, listed
    assert mine[0]["tag"]["handling"] == "H0"
    table = run_cli("inbox", "--keystore", str(marie.path), env=pw).stdout
    assert env.header.id_text in table and "purged" in table
