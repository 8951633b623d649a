"""The liaison almanac: where an officer is posted, what they speak, and what they cover.

An officer card carries, besides name and role, three almanac fields, signed with the rest
of the card by the home node (so no peer and no other node can change who covers what):

* ``languages``: ISO 639-1 codes the officer works in, at most 8, in the officer's order;
* ``posting``: where the officer is stationed, ``<country>`` or ``<country>-<city slug>``
  (``co-bogota`` for a liaison officer posted in Bogota), or empty at home;
* ``coverage``: (country, crime area) pairs the officer covers for partner countries, as in
  Benelux coverage agreements (a Dutch officer in Bogota covers Colombia for Belgium too),
  at most 32. Countries are ISO 3166-1 alpha-2, lower case; crime areas come from the
  controlled vocabulary ``CrimeArea`` (docs/almanac.md gives each one's meaning).

On the wire: ``"languages": [str]``, ``"posting": str``, ``"coverage": [[country, area]]``.
Decoding is strict (unknown codes, duplicates and anything over the limits are refused),
as for every other card field; ``Almanac.create`` is the forgiving side that turns what an
officer typed into that form (lower case, duplicates dropped, coverage sorted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from liaison_net.errors import Malformed

MAX_LANGUAGES = 8
MAX_COVERAGE = 32
MAX_POSTING_CHARS = 48
FIELDS = frozenset({"languages", "posting", "coverage"})


class CrimeArea(StrEnum):
    DRUGS = "drugs"
    FIREARMS = "firearms"
    TRAFFICKING_IN_HUMAN_BEINGS = "trafficking-in-human-beings"
    MIGRANT_SMUGGLING = "migrant-smuggling"
    CYBERCRIME = "cybercrime"
    CHILD_SEXUAL_EXPLOITATION = "child-sexual-exploitation"
    TERRORISM = "terrorism"
    ORGANISED_PROPERTY_CRIME = "organised-property-crime"
    MONEY_LAUNDERING = "money-laundering"
    FRAUD = "fraud"
    ENVIRONMENTAL_CRIME = "environmental-crime"
    VEHICLE_CRIME = "vehicle-crime"
    FUGITIVES = "fugitives"
    MISSING_PERSONS = "missing-persons"
    PUBLIC_ORDER = "public-order"


#: One line each; docs/almanac.md shows the same table (a test keeps them equal).
AREA_MEANING: dict[CrimeArea, str] = {
    CrimeArea.DRUGS: "production of and trafficking in illicit drugs and their precursors",
    CrimeArea.FIREARMS: "illicit trafficking in firearms, their parts, ammunition and "
                        "explosives",
    CrimeArea.TRAFFICKING_IN_HUMAN_BEINGS: "recruiting, moving or holding people to exploit "
                                           "them (sexual, labour, criminal exploitation)",
    CrimeArea.MIGRANT_SMUGGLING: "helping people enter, cross or stay in a country "
                                 "irregularly, for gain",
    CrimeArea.CYBERCRIME: "attacks on information systems: intrusion, ransomware, botnets, "
                          "criminal online services",
    CrimeArea.CHILD_SEXUAL_EXPLOITATION: "sexual abuse and exploitation of children, online "
                                         "and offline",
    CrimeArea.TERRORISM: "terrorist offences, their preparation, financing and "
                         "radicalisation to violence",
    CrimeArea.ORGANISED_PROPERTY_CRIME: "burglary, theft and robbery by mobile organised "
                                        "crime groups",
    CrimeArea.MONEY_LAUNDERING: "laundering criminal proceeds, and tracing and seizing "
                                "criminal assets",
    CrimeArea.FRAUD: "economic and financial fraud: investment, payment, excise and VAT "
                     "fraud, forgery",
    CrimeArea.ENVIRONMENTAL_CRIME: "waste and wildlife trafficking and other crime against "
                                   "the environment",
    CrimeArea.VEHICLE_CRIME: "theft of and trafficking in vehicles and their parts, "
                             "vehicle identity fraud",
    CrimeArea.FUGITIVES: "tracing and arresting wanted persons",
    CrimeArea.MISSING_PERSONS: "searching for missing persons and identifying unknown dead",
    CrimeArea.PUBLIC_ORDER: "major events, football and other public order policing",
}

# ISO 3166-1 alpha-2 (the 249 assigned codes, from the iso-codes package), plus "xk" for
# Kosovo, the user-assigned code the EU and Europol use.
_ISO_3166_1 = """
ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo
bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj
dk dm do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp
gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg
kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml
mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe
pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl
sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um
us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw
"""
COUNTRIES = frozenset([*_ISO_3166_1.split(), "xk"])

#: EU usage that is not ISO 3166: named in the error, so the officer sees the fix.
_COUNTRY_HINTS = {"uk": "gb", "el": "gr"}

# ISO 639-1 (the 184 two-letter codes, from the iso-codes package).
_ISO_639_1 = """
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu
cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi
ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks
ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl
sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
vi vo wa wo xh yi yo za zh zu
"""
LANGUAGES = frozenset(_ISO_639_1.split())

_AREAS = {area.value: area for area in CrimeArea}
_POSTING = re.compile(r"([a-z]{2})(?:-[a-z0-9]+)*")


def check_country(value: object, *, what: str = "country") -> str:
    if isinstance(value, str) and value in COUNTRIES:
        return value
    if isinstance(value, str) and value.lower() in COUNTRIES:
        raise Malformed(f"{what} {value!r:.20} must be lower case")
    hint = _COUNTRY_HINTS.get(value) if isinstance(value, str) else None
    fix = f" (use {hint!r})" if hint else ""
    raise Malformed(f"{what} {value!r:.20} is not an ISO 3166-1 alpha-2 country code{fix}")


def check_area(value: object, *, where: str = "") -> CrimeArea:
    """A crime area of the vocabulary; ``where`` (" in ...") says where a bad one was."""
    area = _AREAS.get(value) if isinstance(value, str) else None
    if area is None:
        raise Malformed(f"unknown crime area {value!r:.40}{where}; one of: "
                        f"{', '.join(_AREAS)}")
    return area


def check_language(value: object) -> str:
    if isinstance(value, str) and value in LANGUAGES:
        return value
    if isinstance(value, str) and value.lower() in LANGUAGES:
        raise Malformed(f"language {value!r:.20} must be lower case")
    raise Malformed(f"language {value!r:.20} is not an ISO 639-1 code")


def check_posting(value: object) -> str:
    """``""`` (at home), ``<country>`` or ``<country>-<city slug>``, e.g. ``co-bogota``."""
    if not isinstance(value, str) or len(value) > MAX_POSTING_CHARS:
        raise Malformed(f"posting must be text of at most {MAX_POSTING_CHARS} characters")
    if value == "":
        return value
    match = _POSTING.fullmatch(value)
    if match is None:
        raise Malformed(f"posting {value!r:.60} must be <country> or <country>-<city>, "
                        "e.g. co-bogota (lower case letters, digits and hyphens)")
    check_country(match.group(1), what="posting country")
    return value


@dataclass(frozen=True, order=True)
class Coverage:
    """One (country, crime area) an officer covers; its text form is ``co/drugs``."""

    country: str
    area: CrimeArea

    def __str__(self) -> str:
        return f"{self.country}/{self.area.value}"

    @classmethod
    def parse(cls, text: str, *, what: str = "coverage") -> Coverage:
        """``COUNTRY/AREA`` as an officer types it (case and spaces forgiven)."""
        country, sep, area = text.strip().lower().partition("/")
        if not sep or not country or not area:
            raise Malformed(f"{what} {text!r:.60} must be COUNTRY/AREA, e.g. co/drugs")
        return cls(check_country(country.strip(), what=f"{what} country"),
                   check_area(area.strip(), where=f" in {what} {text.strip()!r:.60}"))


@dataclass(frozen=True)
class Almanac:
    languages: tuple[str, ...] = ()
    posting: str = ""
    coverage: tuple[Coverage, ...] = ()

    @classmethod
    def create(cls, *, languages: tuple[str, ...] | list[str] = (), posting: str = "",
               coverage: tuple[str, ...] | list[str] = ()) -> Almanac:
        """From what an officer typed: codes lower-cased, duplicates dropped, coverage
        sorted; then checked exactly as a received card is."""
        langs = tuple(dict.fromkeys(code.strip().lower() for code in languages))
        covered = tuple(sorted({Coverage.parse(c, what="--cover") for c in coverage}))
        return cls(langs, posting.strip().lower(), covered).validate()

    def validate(self) -> Almanac:
        if len(self.languages) > MAX_LANGUAGES:
            raise Malformed(f"at most {MAX_LANGUAGES} languages, got {len(self.languages)}")
        if len(set(self.languages)) != len(self.languages):
            raise Malformed("languages must not repeat")
        for code in self.languages:
            check_language(code)
        check_posting(self.posting)
        if len(self.coverage) > MAX_COVERAGE:
            raise Malformed(f"at most {MAX_COVERAGE} coverage entries, got "
                            f"{len(self.coverage)}")
        if len(set(self.coverage)) != len(self.coverage):
            raise Malformed("coverage entries must not repeat")
        for entry in self.coverage:
            check_country(entry.country, what="coverage country")
            check_area(entry.area)
        return self

    def covers(self, country: str, area: CrimeArea) -> bool:
        return Coverage(country, area) in self.coverage

    def matches(self, *, country: str | None = None, area: CrimeArea | None = None,
                language: str | None = None) -> bool:
        """A search: every criterion given must hold; country and area together must be
        one coverage entry (covering co for firearms and pe for drugs is not co/drugs)."""
        if language is not None and language not in self.languages:
            return False
        if country is None and area is None:
            return True
        return any((country is None or c.country == country) and (area is None or c.area == area)
                   for c in self.coverage)

    def to_json(self) -> dict[str, Any]:
        """For people and scripts: coverage in its text form (``co/drugs``)."""
        return {"languages": list(self.languages), "posting": self.posting,
                "coverage": [str(c) for c in self.coverage]}

    def to_wire(self) -> dict[str, Any]:
        return {"languages": list(self.languages), "posting": self.posting,
                "coverage": [[c.country, c.area.value] for c in self.coverage]}

    @classmethod
    def from_wire(cls, d: dict[str, Any], *, what: str) -> Almanac:
        """The almanac fields of a decoded card or request (``d`` has them all)."""
        languages, posting, coverage = d["languages"], d["posting"], d["coverage"]
        if not isinstance(languages, list) or len(languages) > MAX_LANGUAGES:
            raise Malformed(f"{what} languages must be a list of at most {MAX_LANGUAGES}")
        if not isinstance(coverage, list) or len(coverage) > MAX_COVERAGE:
            raise Malformed(f"{what} coverage must be a list of at most {MAX_COVERAGE}")
        entries = []
        for entry in coverage:
            if not isinstance(entry, list) or len(entry) != 2:
                raise Malformed(f"{what} coverage entries must be [country, area]")
            entries.append(Coverage(check_country(entry[0], what=f"{what} coverage country"),
                                    check_area(entry[1], where=f" in {what} coverage")))
        try:
            return cls(tuple(check_language(x) for x in languages), check_posting(posting),
                       tuple(entries)).validate()
        except Malformed as exc:
            raise Malformed(f"{what}: {exc.detail}") from None
