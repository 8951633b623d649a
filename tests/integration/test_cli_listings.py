"""What `liaison inbox` and `liaison requests` print to a script (stdout a pipe), on two
real nodes: whole envelope ids (the id `reply` needs), the inbox by precedence, the
addressee of an outgoing request, the asker of an incoming one."""

from __future__ import annotations

import asyncio
import json

from tests.integration.network import Network, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol
from tests.integration.test_first_alert import directory_with

ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
TAG = ("--handling", "H0", "--tlp", "AMBER", "--share-with", "be,nl",
       "--purpose", "vehicle crime investigation")


def cli(agent: OfficerAgent, *args: str) -> str:
    return run_cli(*args, "--keystore", str(agent.path), env=ENV).stdout


async def test_piped_listings_show_whole_ids_precedence_and_the_other_side(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"))
    jan, marie = enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters")
    for nid in ("nl", "be"):
        net.start(nid)
    async with jan.session() as node:
        await directory_with(node, marie.id)

    sent = {}
    for precedence in ("routine", "flash", "priority"):
        out = cli(jan, "send", "--to", marie.id, "--subject", f"A {precedence} one",
                  "--text", "Blue van", "--precedence", precedence, *TAG)
        sent[precedence] = out.split()[0]
    request = json.loads(cli(jan, "request", "--to", marie.id, "--urgency", "other",
                             "--subject", "Vehicle owner", "--text", "Owner of 1-ABC-123?",
                             "--purpose", "theft investigation", "--json"))["id"]
    await asyncio.to_thread(
        wait_for, lambda: len(json.loads(cli(marie, "inbox", "--json"))) == 4, timeout=30,
        what="the three messages and the request at BE")

    listed = [e["id"] for e in json.loads(cli(marie, "inbox", "--json"))]
    # The request is routine (urgency "other") and arrived after the routine message.
    assert listed == [sent["flash"], sent["priority"], sent["routine"], request]
    table = cli(marie, "inbox")
    assert [table.index(i) for i in listed] == sorted(table.index(i) for i in listed)
    assert "content: held" in table and "…" not in table

    theirs, mine = cli(marie, "requests"), cli(jan, "requests")
    for out in (theirs, mine):
        assert request in out and "…" not in out  # whole: `liaison reply ID` needs it
    assert f"from {jan.id}" in theirs
    assert f"to {marie.id}" in mine and f"from {jan.id}" not in mine
    [row] = json.loads(cli(jan, "requests", "--json"))
    assert (row["direction"], row["to"]) == ("outgoing", [marie.id])
