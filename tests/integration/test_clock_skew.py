"""Clock skew between nodes (issue 9, item 5), with real processes.

NL's node runs with its clock shifted by `[clock] drill_offset_ms` in its config, and its
officer's CLI by `--clock-offset-ms` (or LIAISON_CLOCK_OFFSET_MS, the same option read from
the environment); BE's with the host's (liaison_net/clock.py). Within the window (`[limits]
max_clock_skew_ms`, 5 min) they interoperate; beyond it BE refuses the envelope with
`bad_timestamp` naming the skew, audits it, stores nothing, and NL's officer gets a signed
non-delivery notice with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sqlite3
from datetime import UTC, datetime

import pytest

from liaison_net import clock
from liaison_net.core import codec, sealing
from liaison_net.core.envelope import Kind
from liaison_net.core.ids import id_from_text, id_to_text
from liaison_net.core.limits import MINUTE_MS
from tests.integration.network import Network, audit_rows, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol
from tests.integration.test_faults import inbox_rows
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow

DRILL_SECTION = "\n[clock]\n"


def start_with_offset(net: Network, nid: str, offset_ms: int) -> None:
    """Start ``nid`` with ``[clock] drill_offset_ms = offset_ms`` in its config."""
    config = net.nodes[nid].config
    base = config.read_text().split(DRILL_SECTION)[0]
    config.write_text(f"{base}{DRILL_SECTION}drill_offset_ms = {offset_ms}\n")
    net.start(nid)


def cli_send(jan: OfficerAgent, to: str, text: str, offset_ms: int) -> str:
    """`liaison send` as Jan, on a clock ``offset_ms`` ahead; the envelope id."""
    proc = run_cli("--clock-offset-ms", str(offset_ms),
                   "send", "--to", to, "--subject", "Skew drill", "--text", text,
                   "--handling", "H0", "--tlp", "AMBER", "--share-with", "be,nl",
                   "--purpose", "cross-border investigation", "--keystore", str(jan.path),
                   "--json", env={"LIAISON_PASSPHRASE": PASSPHRASE.decode()})
    answer = json.loads(proc.stdout)
    assert answer["status"] == "accepted", answer
    return str(answer["id"])


def stored_times(net: Network, nid: str, envelope_id: bytes) -> tuple[int, int] | None:
    """(created, received) of an envelope in ``nid``'s database, or None."""
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        row = db.execute("SELECT created, received FROM envelopes WHERE id = ?",
                         (envelope_id,)).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def hop(net: Network, nid: str, peer: str, envelope_id: bytes) -> tuple[str, str | None]:
    with contextlib.closing(sqlite3.connect(net.database(nid), timeout=10)) as db:
        row = db.execute("SELECT state, reason FROM hops WHERE node = ? AND envelope_id = ?",
                         (peer, envelope_id)).fetchone()
    return (str(row[0]), row[1])


def node_log_events(net: Network, nid: str, event: str) -> list[dict[str, object]]:
    out = []
    for line in net.nodes[nid].log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                out.append(record)
    return out


async def test_skew_within_window_delivers_beyond_it_refuses_and_tells_the_sender(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan = enrol(net, "nl/jdevries")
    marie = enrol(net, "be/mpeeters")
    net.start("be")

    # --- +3 min: within BE's 5-minute window -----------------------------------------------
    start_with_offset(net, "nl", 3 * MINUTE_MS)
    warned = node_log_events(net, "nl", "clock.drill_offset")
    assert warned and warned[0]["offset_ms"] == 3 * MINUTE_MS, "the drill offset is logged"
    async with jan.session() as nl:
        await directory_with(nl, marie.id)
    near = id_from_text(cli_send(jan, marie.id, "within the window", 3 * MINUTE_MS))
    wait_for(lambda: near in inbox_rows(net, "be", marie.id), timeout=30,
             what="the +3 min envelope in Marie's inbox at BE")
    times = stored_times(net, "be", near)
    assert times is not None
    created, received = times
    # It really was created ahead of BE's clock, by about the drill's offset.
    assert 3 * MINUTE_MS - 30_000 < created - received <= 3 * MINUTE_MS, created - received
    wait_for(lambda: hop(net, "nl", "be", near)[0] == "delivered", timeout=30,
             what="NL to mark the +3 min hop delivered")

    # --- +10 min: beyond it -----------------------------------------------------------------
    net.kill("nl", signal.SIGTERM)
    start_with_offset(net, "nl", 10 * MINUTE_MS)
    be_seq = max((r.seq for r in audit_rows(net, "be")), default=0)
    far = id_from_text(cli_send(jan, marie.id, "beyond the window", 10 * MINUTE_MS))
    wait_for(lambda: hop(net, "nl", "be", far)[0] == "refused", timeout=30,
             what="NL to record BE's refusal of the +10 min envelope")
    assert hop(net, "nl", "be", far) == ("refused", "bad_timestamp")

    # BE: refused with a reason naming the skew, audited under the envelope's id (its
    # signature checked out; only its clock is wrong), nothing stored.
    refusals = [r for r in audit_rows(net, "be", after=be_seq)
                if r.event == "envelope.refused" and r.envelope_id == far]
    assert len(refusals) == 1, refusals
    refusal = refusals[0]
    assert refusal.actor == "nl" and refusal.detail["layer"] == "destination"
    assert refusal.detail["code"] == "bad_timestamp"
    reason = str(refusal.detail["reason"])
    assert re.search(r"created (9\.\d|10\.\d|10) min ahead of this node's clock", reason), reason
    assert "window is 5 min" in reason
    assert stored_times(net, "be", far) is None
    assert far not in inbox_rows(net, "be", marie.id)
    # NL's own audit names the peer's code.
    assert any(r.event == "envelope.refused_by_peer" and r.envelope_id == far
               and r.detail.get("code") == "bad_timestamp" for r in audit_rows(net, "nl"))

    # The sender learns it: a non-delivery notice, signed by NL, with BE's reason.
    async with jan.session() as nl:
        async with asyncio.timeout(30):
            while True:
                notices = [e for e in await nl.inbox_all() if e.kind == "notice"]
                if notices:
                    break
                await asyncio.sleep(0.2)
        assert len(notices) == 1, notices
        raw = await nl.fetch(notices[0].id)
        directory = await nl.directory(now=datetime.now(UTC))
        original = await nl.status(id_to_text(far))
    notice = sealing.verify(raw, directory.lookup(), now=None)
    assert notice.header.sender == "nl/node" and notice.header.kind is Kind.NOTICE
    assert notice.header.ref == far
    content = codec.unpack(sealing.open_envelope(notice, jan.id, [jan.keystore.encryption]),
                           what="notice", max_bytes=4096)
    assert content["type"] == "non-delivery" and content["node"] == "be"
    assert content["envelope"] == far and content["reason"] == "bad_timestamp"
    assert "ahead of this node's clock" in content["detail"]
    assert original.hops["be"].state == "refused"
    assert original.hops["be"].reason == "bad_timestamp"
    # The officer's own CLI shows the notice and its reason (its clock shifted through the
    # environment this time: the same option, for scripts).
    shown = json.loads(run_cli("read", notices[0].id, "--keystore", str(jan.path), "--json",
                               env={"LIAISON_PASSPHRASE": PASSPHRASE.decode(),
                                    clock.OFFSET_ENV: str(10 * MINUTE_MS)}).stdout)
    assert shown["content"]["subject"] == "Notice: non-delivery"
    assert "reason: bad_timestamp" in shown["content"]["text"]



def test_the_command_line_offset_overrides_the_config(make_network: type[Network]) -> None:
    """`node serve --clock-offset-ms` wins over `[clock] drill_offset_ms` for one run."""
    net = make_network.create(node_ids=("nl",))
    handle = net.nodes["nl"]
    handle.config.write_text(f"{handle.config.read_text()}{DRILL_SECTION}"
                             f"drill_offset_ms = {10 * MINUTE_MS}\n")
    handle.extra_args = ("--clock-offset-ms", str(-2 * MINUTE_MS))
    net.start("nl")
    warned = wait_for(lambda: node_log_events(net, "nl", "clock.drill_offset"), timeout=30,
                      what="NL to log its drill offset")
    assert [w["offset_ms"] for w in warned] == [-2 * MINUTE_MS]
