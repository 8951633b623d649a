"""Who a message goes to: the ``--to`` values an officer types, resolved on their machine.

A ``--to`` value is an officer id (``be/mpeeters``) or a coverage address
(``coverage:co/drugs``: whoever covers Colombia for drugs, as in the Benelux coverage
agreements). Parsing comes first, before the keystore is opened, so a typo fails at once.
Resolution uses only the CA-verified directory on the officer's own machine: a coverage
becomes the officers whose signed cards say they cover it, and the node only ever sees the
officer ids the envelope is sealed for. Each resolved recipient then goes through the same
tag and policy checks as one named by id; resolution never widens what the tag allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from liaison_net.client.directory import Directory
from liaison_net.core.almanac import Coverage, check_area, check_country
from liaison_net.core.ids import check_officer_id
from liaison_net.errors import Malformed, NotFound

COVERAGE_PREFIX = "coverage:"
_COUNTRY_SHAPE = re.compile(r"[a-z]{2}")

Address = str | Coverage  # an officer id, or a coverage to resolve


@dataclass(frozen=True)
class Resolution:
    officers: list[str]  # every recipient once, in the order the addresses were given
    coverage: dict[str, list[str]]  # "co/drugs" -> the officers it resolved to


def parse_addresses(values: Iterable[str]) -> list[Address]:
    """``--to`` values as addresses, in order, each once; nothing is looked up yet."""
    out: list[Address] = []
    for value in values:
        text = value.strip()
        if text.lower().startswith(COVERAGE_PREFIX):
            out.append(parse_coverage(text))
        else:
            out.append(check_officer_id(text, what="--to"))
    return list(dict.fromkeys(out))


def parse_coverage(text: str) -> Coverage:
    """``coverage:COUNTRY/AREA``. A country no card can carry (not ISO 3166-1) is answered
    as what it is for the sender: nobody covers it."""
    spec = text.strip()[len(COVERAGE_PREFIX):].strip().lower()
    country, sep, area = (part.strip() for part in spec.partition("/"))
    if not sep or not _COUNTRY_SHAPE.fullmatch(country) or not area:
        raise Malformed(f"--to {text!r:.60} must be coverage:COUNTRY/AREA, "
                        "e.g. coverage:co/drugs")
    crime_area = check_area(area, where=f" in --to {text.strip()!r:.60}")
    try:
        check_country(country)
    except Malformed as exc:
        raise NotFound(f"no officer covers {country}/{crime_area}: {exc.detail}") from None
    return Coverage(country, crime_area)


def resolve(addresses: Iterable[Address], directory: Directory, *, sender: str,
            now: int) -> Resolution:
    """Officer ids for ``addresses``: a coverage becomes every other officer whose card,
    valid at ``now``, covers it; one that nobody covers raises NotFound naming it."""
    officers: list[str] = []
    via: dict[str, list[str]] = {}
    for address in addresses:
        if isinstance(address, str):
            officers.append(address)
            continue
        found = [card.officer for card in directory.search(
                     now=now, country=address.country, area=address.area)
                 if card.officer != sender]
        if not found:
            raise NotFound(_nobody(address, directory, sender=sender, now=now))
        via[str(address)] = found
        officers.extend(found)
    return Resolution(list(dict.fromkeys(officers)), via)


def _nobody(coverage: Coverage, directory: Directory, *, sender: str, now: int) -> str:
    """Why a coverage resolved to no one, in one line."""
    covering = sorted(o for o, card in directory.cards.items()
                      if card.almanac.covers(coverage.country, coverage.area))
    expired = [o for o in covering if now >= directory.cards[o].valid_until]
    if expired:
        return (f"no officer with a valid card covers {coverage} (the card of "
                f"{', '.join(expired)} has expired)")
    if covering == [sender]:
        return f"no officer covers {coverage} apart from you"
    return f"no officer covers {coverage}"
