"""Early-warning signals across four real nodes: fan-out to the desks the tag allows,
acknowledgements back to the sender, escalation, hit/no-hit matching by OPRF pseudonyms,
the per-officer evaluation limit, and no subject identifier in clear anywhere."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net.core import pseudonym, sealing
from liaison_net.core.envelope import Kind
from liaison_net.core.signals import Category, Confidence, Severity, SignalAnnex, SignalPayload
from liaison_net.errors import PolicyRefused
from tests.integration.network import Network, audit_rows, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol, now_ms
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow

SIGNALS = {"ack_deadline_high_s": 1.5, "escalation_check_s": 0.2, "evaluations_per_hour": 3}
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
NAMES = ("Jan Janssens", "JANSSENS, jan", "1990-04-12", "12/04/1990", "janssens")


def cli(agent: OfficerAgent, *args: str, check: bool = True) -> str:
    proc = run_cli(*args, "--keystore", str(agent.path), env=ENV, check=check)
    return proc.stdout + proc.stderr


def raise_signal(agent: OfficerAgent, share_with: str, *extra: str,
                 severity: str = "medium") -> str:
    out = cli(agent, "signal", "raise", "--category", Category.TRAVEL.value, "--severity",
              severity, "--region", f"{agent.id[:2].upper()}-LI", "--text",
              "Announced travel to a conflict zone, bought a one-way ticket",
              "--share-with", share_with, "--json", *extra)
    return str(json.loads(out[out.index("{"):])["id"])


def notices(net: Network, agent: OfficerAgent, kind: str) -> list[dict[str, object]]:
    """The officer's signal notices of one type, read with the officer's own CLI."""
    shown = []
    inbox = run_cli("inbox", "--all", "--json", "--keystore", str(agent.path), env=ENV)
    for entry in json.loads(inbox.stdout):
        if entry["kind"] != "notice":
            continue
        read = json.loads(run_cli("read", entry["id"], "--json", "--keystore",
                                  str(agent.path), env=ENV).stdout)
        if read["content"]["subject"] == f"Notice: {kind}":
            shown.append(read)
    return shown


@pytest.fixture
def network(make_network: type[Network]) -> Network:
    return make_network.create(node_ids=("nl", "be", "lu", "de-nw"), sections={"signals": SIGNALS})


async def test_signal_fans_out_to_allowed_desks_and_acks_return(network: Network) -> None:
    net = network
    jan = enrol(net, "nl/jdevries")
    desks = {n: enrol(net, f"{n}/desk") for n in ("be", "lu", "de-nw")}
    for nid in net.nodes:
        net.start(nid)
    async with jan.session() as node:
        await directory_with(node, *(d.id for d in desks.values()))

    signal_id = raise_signal(jan, "be,nl,lu")
    for n in ("be", "lu"):
        await asyncio.to_thread(wait_for, lambda n=n: signal_id in cli(
            desks[n], "signal", "list", "--json"), timeout=30, what=f"the {n} desk")
    assert signal_id not in cli(desks["de-nw"], "signal", "list", "--json")

    # Forced through the API to DE-NW's desk, the Benelux-only signal is refused and audited.
    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        now = now_ms()
        forced = sealing.seal(
            sender=jan.id, sender_key=jan.keystore.signing,
            recipients=[directory.recipient("de-nw/desk", now=now)],
            tag=benelux_tag("nl"), now=now, expires=now + 3_600_000, kind=Kind.SIGNAL,
            plaintext=SignalPayload(Category.TRAVEL, Severity.MEDIUM, Confidence.LOW, "NL",
                                    now, now + 3_600_000, "x").encode(),
            signal=SignalAnnex(Severity.MEDIUM))
        with pytest.raises(PolicyRefused) as refused:
            await node.submit(forced.to_bytes())
    assert refused.value.code == "policy.share_with"
    assert any(r.event == "envelope.refused" and r.detail.get("code") == "policy.share_with"
               for r in audit_rows(net, "nl"))

    for n in ("be", "lu"):
        assert "acknowledged" in cli(desks[n], "signal", "ack", signal_id)

    def shown() -> dict[str, object]:
        out = cli(jan, "signal", "show", signal_id, "--json")
        return dict(json.loads(out[out.index("{"):]))

    state = await asyncio.to_thread(wait_for, lambda: (s := shown())["pending"] == [] and s,
                                    timeout=30, what="both acknowledgements at the sender")
    assert sorted(a["desk"] for a in state["acknowledged"]) == ["be/desk", "lu/desk"]
    assert state["escalated"] == []


async def test_unacknowledged_signal_escalates(network: Network) -> None:
    net = network
    jan = enrol(net, "nl/jdevries")
    desk, backup = enrol(net, "be/desk"), enrol(net, "be/desk-backup")
    for nid in ("nl", "be"):
        net.start(nid)
    async with jan.session() as node:
        await directory_with(node, desk.id)
    signal_id = raise_signal(jan, "be,nl", severity="high")  # the test's deadline: 1.5 s
    await asyncio.to_thread(wait_for, lambda: notices(net, backup, "signal-escalation"),
                            timeout=30, interval=0.5, what="the backup desk's escalation")
    await asyncio.to_thread(wait_for, lambda: json.loads(cli(
        jan, "signal", "show", signal_id, "--json"))["escalated"] == ["be"], timeout=30,
        interval=0.5, what="the sender to see the escalation")
    assert any(r.event == "signal.escalated" for r in audit_rows(net, "be"))


async def test_same_person_matched_once_per_owner_without_clear_identifiers(
        network: Network) -> None:
    net = network
    marie, claude = enrol(net, "be/mpeeters"), enrol(net, "lu/cschmit")
    desks = {n: enrol(net, f"{n}/desk") for n in ("be", "lu", "nl")}
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    async with marie.session() as node:
        await directory_with(node, claude.id, "nl/desk", "lu/desk")
    async with claude.session() as node:
        await directory_with(node, marie.id, "be/desk")

    subject = ("--justification", "case 2026/117, border check at Steinfort")
    earlier = raise_signal(marie, "be,nl,lu", "--subject-name", "Jan Janssens",
                           "--subject-birth-date", "1990-04-12", *subject)
    await asyncio.to_thread(wait_for, lambda: earlier in cli(desks["lu"], "signal", "list",
                                                             "--json"),
                            timeout=30, what="BE's signal at the LU desk")
    later = raise_signal(claude, "be,nl,lu", "--subject-name", "JANSSENS, jan",
                         "--subject-birth-date", "12/04/1990", *subject)
    other = raise_signal(claude, "be,nl,lu", "--subject-name", "Piet Peeters",
                         "--subject-birth-date", "1985-01-01", *subject)

    for owner in (marie, claude):
        found = await asyncio.to_thread(wait_for, lambda o=owner: notices(net, o,
                                        "signal-match"), timeout=30, interval=0.5,
                                        what=f"the match notice for {owner.id}")
        assert len(found) == 1
        assert f"signals: ['{earlier}', '{later}']" in found[0]["content"]["text"]
    # Each owner also sees the match on its own signal with `signal show`.
    for owner, sid in ((marie, earlier), (claude, later)):
        shown = json.loads(cli(owner, "signal", "show", sid, "--json"))
        assert shown["matches"] == [{"signals": [earlier, later], "countries": ["be", "lu"]}]
        assert "countries: ['be', 'lu']" in found[0]["content"]["text"]
    # A different person produces no notice: once BE's desk has the other signal, BE has
    # already checked it for matches (before answering its peer).
    await asyncio.to_thread(wait_for, lambda: other in cli(desks["be"], "signal", "list",
                                                           "--json"),
                            timeout=30, what="the other signal at the BE desk")
    assert len(notices(net, marie, "signal-match")) == 1

    # An officer over the evaluation limit (3 an hour in this test) is refused.
    third = run_cli("signal", "raise", "--category", Category.TRAVEL.value, "--severity",
                      "low", "--region", "LU", "--text", "x", "--share-with", "be,lu",
                      "--subject-name", "A B", "--subject-birth-date", "2000-01-01",
                      *subject, "--keystore", str(claude.path), env=ENV, check=False)
    claude_again = run_cli("signal", "raise", "--category", Category.TRAVEL.value,
                           "--severity", "low", "--region", "LU", "--text", "x",
                           "--share-with", "be,lu", "--subject-name", "C D",
                           "--subject-birth-date", "2000-01-01", *subject, "--keystore",
                           str(claude.path), env=ENV, check=False)
    assert third.returncode == 0, third.stderr
    assert claude_again.returncode == 2 and "rate_limited" in claude_again.stderr

    # No subject identifier in clear in anything the nodes store or log.
    normalised = pseudonym.normalise("Jan Janssens", "1990-04-12")
    needles = [n.encode() for n in NAMES] + [b"Piet Peeters", b"1985-01-01", normalised]
    for path in sorted(Path(net.root / "data").rglob("*")) + sorted(
            Path(net.root / "logs").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle.lower() not in data.lower(), f"{needle!r} in clear in {path}"
    assert re.search(rb"pseudonym\.evaluated", b"".join(
        p.read_bytes() for p in Path(net.root / "data").rglob("node.sqlite3*")))


async def test_matching_holds_across_a_pseudonym_key_rotation(network: Network) -> None:
    """A signal raised before the network key rotates still matches one raised during the
    rotation window: clients get evaluations under both keys."""
    net = network
    marie, claude = enrol(net, "be/mpeeters"), enrol(net, "lu/cschmit")
    desks = {n: enrol(net, f"{n}/desk") for n in ("be", "lu")}
    for nid in ("be", "lu"):
        net.start(nid)
    async with marie.session() as node:
        await directory_with(node, "lu/desk")
    async with claude.session() as node:
        await directory_with(node, "be/desk")
    why = ("--justification", "case 2026/204")
    before = raise_signal(marie, "be,lu", "--subject-name", "Hans Müller",
                          "--subject-birth-date", "1979-03-02", *why)
    await asyncio.to_thread(wait_for, lambda: before in cli(desks["lu"], "signal", "list",
                                                            "--json"),
                            timeout=30, what="BE's signal at the LU desk")
    run_cli("admin", "pseudonym-key", "rotate", "--dir", str(net.certs))
    for nid in ("be", "lu"):
        run_cli("admin", "pseudonym-key", "install", "--config", str(net.nodes[nid].config),
                "--from", str(net.certs))
    keys = json.loads(run_cli("admin", "keys", "list", "--config",
                              str(net.nodes["lu"].config), "--json").stdout)
    assert [k["state"] for k in keys if k["kind"] == "network-pseudonym"] == ["active", "grace"]
    during = raise_signal(claude, "be,lu", "--subject-name", "MUELLER, hans",
                          "--subject-birth-date", "02.03.1979", *why)
    found = await asyncio.to_thread(wait_for, lambda: notices(net, marie, "signal-match"),
                                    timeout=30, interval=0.5, what="the match across rotation")
    assert f"signals: ['{before}', '{during}']" in found[0]["content"]["text"]
