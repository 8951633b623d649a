"""Coverage routing across real nodes: an NL officer writes to whoever covers Colombia for
drugs, and it reaches the BE officer whose card says so, and no one else."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from liaison_net.core import sealing
from liaison_net.core.almanac import Almanac
from tests.integration.network import Network, drained_row_counts, run_cli
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol
from tests.integration.test_first_alert import directory_with, inbox_ids
from tests.waits import PATIENCE_S

ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
MARIE_ALMANAC = Almanac.create(languages=["nl", "es"], posting="co-bogota",
                               coverage=["co/drugs", "pe/drugs"])


@dataclass
class Almanac3:
    net: Network
    jan: OfficerAgent  # nl, the sender; covers nothing
    marie: OfficerAgent  # be, posted in Bogota: co/drugs, pe/drugs
    koen: OfficerAgent  # be: co/firearms
    anne: OfficerAgent  # lu: pe/drugs


@pytest.fixture
async def almanac3(make_network: type[Network]) -> Almanac3:
    net = make_network.create(node_ids=("nl", "be", "lu"))
    n = Almanac3(
        net, enrol(net, "nl/jdevries"),
        enrol(net, "be/mpeeters", languages=("nl", "es"), posting="co-bogota",
              coverage=("co/drugs", "pe/drugs")),
        enrol(net, "be/kjanssens", languages=("fr",), coverage=("co/firearms",)),
        enrol(net, "lu/aschmit", languages=("fr", "de"), coverage=("pe/drugs",)))
    for nid in ("nl", "be", "lu"):
        net.start(nid)
    async with n.jan.session() as nl:
        await directory_with(nl, n.marie.id, n.koen.id, n.anne.id)
    return n


def liaison(n: Almanac3, *args: str) -> tuple[int, str, str]:
    proc = run_cli(*args, "--keystore", str(n.jan.path), check=False, env=ENV)
    return proc.returncode, proc.stdout, proc.stderr


def send(n: Almanac3, *to: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    return liaison(n, "send", *(x for t in to for x in ("--to", t)), "--subject",
                   "Container MSCU 123456-7", "--text", "Cocaine shipment from Buenaventura",
                   "--handling", "H0", "--tlp", "AMBER", "--purpose",
                   "drug trafficking inquiry", "--json", *extra)


async def test_send_to_a_coverage_reaches_the_officer_who_covers_it(almanac3: Almanac3) -> None:
    """`--to coverage:co/drugs` from NL reaches be/mpeeters (co/drugs) and not
    be/kjanssens (co/firearms, the same country, another area), on the same BE node."""
    n = almanac3
    code, out, err = send(n, "coverage:co/drugs")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["recipients"] == [n.marie.id]
    assert answer["coverage"] == {"co/drugs": [n.marie.id]}
    assert answer["share_with"] == ["be", "nl"]
    async with n.marie.session() as be, n.koen.session() as be2:
        [envelope_id] = await inbox_ids(be, 1)
        assert envelope_id == answer["id"]
        raw = await be.fetch(envelope_id)
        directory = await directory_with(be, n.jan.id)
        envelope = sealing.verify(raw, directory.lookup(), now=None)
        assert [r.officer for r in envelope.header.recipients] == [n.marie.id]
        assert b"Buenaventura" in sealing.open_envelope(envelope, n.marie.id,
                                                        [n.marie.keystore.encryption])
        assert await be2.inbox_all() == []


async def test_mixed_addresses_reach_each_officer_once(almanac3: Almanac3) -> None:
    n = almanac3
    code, out, err = send(n, "coverage:co/drugs", n.marie.id, "coverage:pe/drugs")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["recipients"] == [n.marie.id, n.anne.id]
    assert answer["coverage"] == {"co/drugs": [n.marie.id],
                                  "pe/drugs": [n.marie.id, n.anne.id]}
    async with n.marie.session() as be, n.anne.session() as lu:
        assert await inbox_ids(be, 1) == [answer["id"]]
        assert await inbox_ids(lu, 1) == [answer["id"]]
        await asyncio.sleep(0.5)  # a second copy, if one were coming, would be relayed too
        assert len(await be.inbox_all()) == 1


async def test_an_unknown_or_uncovered_coverage_is_one_clear_line(almanac3: Almanac3) -> None:
    n = almanac3
    before = drained_row_counts(n.net, "nl")
    code, out, err = send(n, "coverage:xx/drugs")
    assert (code, out) == (2, "")
    assert err == ("error: not_found: no officer covers xx/drugs: country 'xx' is not an "
                   "ISO 3166-1 alpha-2 country code\n")
    code, out, err = send(n, n.marie.id, "coverage:co/terrorism")
    assert (code, out, err) == (2, "", "error: not_found: no officer covers co/terrorism\n")
    assert drained_row_counts(n.net, "nl") == before  # nothing was sent to anyone


async def test_a_covering_officer_outside_share_with_is_refused_by_the_tag(
        almanac3: Almanac3) -> None:
    """Resolution never widens the tag: be/mpeeters covers co/drugs, but the tag shares
    with NL and LU only, so the send is refused naming him and the rule."""
    n = almanac3
    before = drained_row_counts(n.net, "nl")
    code, _, err = send(n, "coverage:co/drugs", extra=("--share-with", "nl,lu"))
    assert code == 2
    assert err == ("error: policy.share_with: not sending to be/mpeeters: send to be "
                   "refused: the target node is not in the tag's share_with (add be to "
                   "--share-with if the information may go there)\n")
    assert drained_row_counts(n.net, "nl") == before


async def test_directory_search_finds_who_covers_it(almanac3: Almanac3) -> None:
    n = almanac3
    code, out, err = liaison(n, "directory", "search", "--country", "co", "--area", "drugs",
                             "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["criteria"] == {"country": "co", "area": "drugs", "language": None}
    assert [(o["officer"], o["posting"], o["languages"], o["coverage"])
            for o in found["officers"]] == [
        (n.marie.id, "co-bogota", ["nl", "es"], ["co/drugs", "pe/drugs"])]

    code, out, err = liaison(n, "directory", "search", "--country", "co", "--area", "drugs")
    assert code == 0, err
    assert n.marie.id in out and "co-bogota" in out and "nl, es" in out
    assert n.koen.id not in out
    assert "1 found: covers co/drugs" in out

    code, out, _ = liaison(n, "directory", "search", "--area", "drugs", "--language", "fr",
                           "--json")
    assert [o["officer"] for o in json.loads(out)["officers"]] == [n.anne.id]
    code, out, _ = liaison(n, "directory", "search", "--country", "co", "--area", "terrorism")
    assert (code, out.strip()) == (0, "no officer covers co/terrorism")


async def test_directory_still_lists_everyone_with_their_almanac(almanac3: Almanac3) -> None:
    n = almanac3
    code, out, err = liaison(n, "directory", "--json")
    assert code == 0, err
    officers = {o["officer"]: o for o in json.loads(out)["officers"]}
    assert set(officers) == {n.jan.id, n.marie.id, n.koen.id, n.anne.id}
    assert officers[n.koen.id]["coverage"] == ["co/firearms"]
    assert officers[n.jan.id]["coverage"] == [] and officers[n.jan.id]["posting"] == ""
    code, out, err = liaison(n, "directory")
    assert code == 0, err
    assert "4 officers on 3 nodes" in out


async def test_a_key_rotation_keeps_what_the_card_says_the_officer_covers(
        almanac3: Almanac3) -> None:
    n = almanac3
    run_cli("officer", "rotate", "--keystore", str(n.marie.path), env=ENV)
    async with n.jan.session() as nl:
        async with asyncio.timeout(PATIENCE_S):
            while True:
                card = (await nl.directory(now=datetime.now(UTC))).cards[n.marie.id]
                if card.version == 2:
                    break
                await asyncio.sleep(0.1)
    assert card.almanac == MARIE_ALMANAC
    code, out, err = send(n, "coverage:co/drugs")
    assert code == 0, err
    assert json.loads(out)["recipients"] == [n.marie.id]
