"""`--to` addresses on the officer's machine: ids and coverage:COUNTRY/AREA, resolved from
the verified directory (the almanac search behind `liaison directory search`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liaison_net.client.addressing import Resolution, parse_addresses, resolve
from liaison_net.client.directory import Directory
from liaison_net.core import crypto
from liaison_net.core.almanac import AREA_MEANING, Almanac, Coverage, CrimeArea
from liaison_net.core.identity import OfficerCard
from liaison_net.errors import Malformed, NotFound

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_795_000_000_000
DAY = 86_400_000


def _card(officer: str, *coverage: str, languages: tuple[str, ...] = (),
          valid_until: int = NOW + DAY) -> OfficerCard:
    return OfficerCard(officer, officer.title(), "liaison officer",
                       crypto.generate_signing_key().public,
                       crypto.generate_encryption_key().public, 1, NOW - DAY, valid_until,
                       Almanac.create(languages=languages, coverage=coverage))


def _directory(*cards: OfficerCard) -> Directory:
    return Directory(node_keys={}, cards={c.officer: c for c in cards})


DIRECTORY = _directory(
    _card("be/mpeeters", "co/drugs", "pe/drugs", languages=("nl", "es")),
    _card("be/kjanssens", "co/firearms", languages=("fr",)),
    _card("lu/aschmit", "co/drugs", languages=("fr", "de")),
    _card("nl/jdevries", "co/drugs"),
    _card("nl/old", "ve/drugs", valid_until=NOW - 1),
)


# --- parsing --------------------------------------------------------------------------------


def test_ids_and_coverage_parse_in_order_each_once() -> None:
    addresses = parse_addresses(["be/mpeeters", "coverage:co/drugs", " Coverage:CO/Drugs ",
                                 "be/mpeeters", "coverage:pe/drugs"])
    assert addresses == ["be/mpeeters", Coverage("co", CrimeArea.DRUGS),
                         Coverage("pe", CrimeArea.DRUGS)]


@pytest.mark.parametrize("value", ["coverage:co", "coverage:/drugs", "coverage:co/",
                                   "coverage:colombia/drugs", "coverage:"])
def test_a_coverage_without_country_and_area_is_malformed(value: str) -> None:
    with pytest.raises(Malformed, match=r"must be coverage:COUNTRY/AREA, e\.g\. "
                                        r"coverage:co/drugs"):
        parse_addresses([value])


def test_an_unknown_crime_area_is_named_with_the_vocabulary() -> None:
    with pytest.raises(Malformed, match="unknown crime area 'drug' in --to "
                                        "'coverage:co/drug'; one of: drugs, firearms"):
        parse_addresses(["coverage:co/drug"])


def test_an_unknown_country_is_a_coverage_nobody_has() -> None:
    with pytest.raises(NotFound) as exc:
        parse_addresses(["coverage:xx/drugs"])
    assert exc.value.detail == ("no officer covers xx/drugs: country 'xx' is not an "
                                "ISO 3166-1 alpha-2 country code")
    with pytest.raises(NotFound, match=r"no officer covers uk/fraud: .*\(use 'gb'\)"):
        parse_addresses(["coverage:uk/fraud"])


def test_a_bad_officer_id_is_still_refused() -> None:
    with pytest.raises(Malformed, match="--to"):
        parse_addresses(["not an id"])


# --- resolving ------------------------------------------------------------------------------


def test_a_coverage_reaches_every_other_officer_who_covers_it_and_no_one_else() -> None:
    result = resolve(parse_addresses(["coverage:co/drugs"]), DIRECTORY,
                     sender="nl/jdevries", now=NOW)
    # be/kjanssens covers Colombia, but for firearms; nl/jdevries is the sender.
    assert result == Resolution(["be/mpeeters", "lu/aschmit"],
                                {"co/drugs": ["be/mpeeters", "lu/aschmit"]})


def test_mixed_addresses_resolve_in_order_without_duplicates() -> None:
    result = resolve(parse_addresses(["be/kjanssens", "coverage:co/drugs", "lu/aschmit",
                                      "coverage:pe/drugs"]),
                     DIRECTORY, sender="nl/jdevries", now=NOW)
    assert result.officers == ["be/kjanssens", "be/mpeeters", "lu/aschmit"]
    assert result.coverage == {"co/drugs": ["be/mpeeters", "lu/aschmit"],
                               "pe/drugs": ["be/mpeeters"]}


def test_a_coverage_nobody_has_is_one_clear_error() -> None:
    with pytest.raises(NotFound) as exc:
        resolve(parse_addresses(["be/mpeeters", "coverage:co/terrorism"]), DIRECTORY,
                sender="nl/jdevries", now=NOW)
    assert exc.value.detail == "no officer covers co/terrorism"


def test_an_expired_card_is_not_written_to_and_the_error_says_so() -> None:
    with pytest.raises(NotFound) as exc:
        resolve(parse_addresses(["coverage:ve/drugs"]), DIRECTORY, sender="nl/jdevries",
                now=NOW)
    assert exc.value.detail == ("no officer with a valid card covers ve/drugs (the card of "
                                "nl/old has expired)")


def test_the_sender_alone_covering_it_is_no_recipient() -> None:
    alone = _directory(_card("nl/jdevries", "co/drugs"))
    with pytest.raises(NotFound) as exc:
        resolve(parse_addresses(["coverage:co/drugs"]), alone, sender="nl/jdevries",
                now=NOW)
    assert exc.value.detail == "no officer covers co/drugs apart from you"


# --- searching ------------------------------------------------------------------------------


def _found(**criteria: object) -> list[str]:
    return [c.officer for c in DIRECTORY.search(now=NOW, **criteria)]  # type: ignore[arg-type]


def test_search_by_country_area_and_language() -> None:
    assert _found(country="co", area=CrimeArea.DRUGS) == ["be/mpeeters", "lu/aschmit",
                                                         "nl/jdevries"]
    assert _found(country="co") == ["be/kjanssens", "be/mpeeters", "lu/aschmit",
                                    "nl/jdevries"]
    assert _found(area=CrimeArea.FIREARMS) == ["be/kjanssens"]
    assert _found(country="co", area=CrimeArea.DRUGS, language="fr") == ["lu/aschmit"]
    assert _found(language="es") == ["be/mpeeters"]
    assert _found(country="pe", area=CrimeArea.FIREARMS) == []


def test_search_leaves_out_expired_cards() -> None:
    assert _found(country="ve") == []
    assert "nl/old" not in _found()


# --- the documented vocabulary --------------------------------------------------------------


def test_docs_almanac_lists_every_crime_area_with_its_meaning() -> None:
    text = (ROOT / "docs" / "almanac.md").read_text()
    section = text.split("## Crime areas")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| (.+?) \|$", section, flags=re.M))
    assert rows == {area.value: meaning for area, meaning in AREA_MEANING.items()}
    assert set(AREA_MEANING) == set(CrimeArea)


def test_every_command_in_docs_almanac_parses() -> None:
    from tests.test_docs_commands import liaison_invocations, parse

    invocations = liaison_invocations((ROOT / "docs" / "almanac.md").read_text())
    assert len(invocations) == 4
    for args in invocations:
        parse(args)
