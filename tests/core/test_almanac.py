"""The almanac fields of officer cards and enrolment requests: strict decoding, limits, and
a round trip through the signed bytes."""

from __future__ import annotations

from typing import Any

import pytest

from liaison_net.core import codec, crypto
from liaison_net.core.almanac import (
    MAX_COVERAGE,
    MAX_LANGUAGES,
    Almanac,
    Coverage,
    CrimeArea,
)
from liaison_net.core.identity import (
    CARD_DOMAIN,
    MAX_CARD_BYTES,
    MAX_NAME_CHARS,
    REQUEST_DOMAIN,
    EnrolmentRequest,
    decode_stored_card,
    issue_card,
    renewal,
    sign_enrolment_request,
    verify_card,
    verify_enrolment_request,
)
from liaison_net.errors import BadSignature, Malformed
from tests.core.factories import NOW

NODE = crypto.generate_signing_key()
OFFICER = crypto.generate_signing_key()
ENCRYPTION = crypto.generate_encryption_key().public
#: 33 distinct countries: one more coverage entry than a card may carry.
_33 = "be nl lu de fr co pe ec bo ve br pa mx gt hn sv cr ni cu do jm tt gy sr cl ar uy py es pt"
COUNTRIES_33 = [*_33.split(), "it", "ma", "dz"]
BOGOTA = Almanac.create(languages=["nl", "es", "en"], posting="co-bogota",
                        coverage=["co/drugs", "pe/drugs", "co/money-laundering"])


def _request(almanac: Almanac = BOGOTA, officer: str = "nl/jdevries") -> EnrolmentRequest:
    return EnrolmentRequest(officer, "Jan de Vries", "liaison officer", OFFICER.public,
                            ENCRYPTION, almanac)


def _issue(almanac: Almanac = BOGOTA) -> bytes:
    return issue_card(_request(almanac), node_id="nl", node_key=NODE, version=1, now=NOW,
                      valid_for_ms=86_400_000)


def _card_wire(**changes: Any) -> dict[str, Any]:
    outer = codec.unpack(_issue(), what="card", max_bytes=MAX_CARD_BYTES)
    body = codec.unpack(outer[0], what="card body", max_bytes=MAX_CARD_BYTES)
    assert isinstance(body, dict)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def _sign_card(body: dict[str, Any]) -> bytes:
    """A card body as a home node would sign it: only the content can be wrong."""
    packed = codec.pack(body)
    return codec.pack([packed, crypto.sign(NODE, CARD_DOMAIN + packed)])


def _verify(raw: bytes) -> Any:
    return verify_card(raw, node_public=NODE.public, node_id="nl", now=NOW)


# --- round trips ----------------------------------------------------------------------------


def test_a_card_carries_languages_posting_and_coverage_through_its_signed_bytes() -> None:
    card = _verify(_issue())
    assert card.almanac == BOGOTA
    assert card.almanac.languages == ("nl", "es", "en")  # the officer's order
    assert card.almanac.posting == "co-bogota"
    assert [str(c) for c in card.almanac.coverage] == [
        "co/drugs", "co/money-laundering", "pe/drugs"]  # sorted
    assert card.almanac.covers("co", CrimeArea.DRUGS)
    assert not card.almanac.covers("co", CrimeArea.FIREARMS)


def test_the_wire_fields_are_flat_and_plain() -> None:
    body = _card_wire()
    assert body["languages"] == ["nl", "es", "en"]
    assert body["posting"] == "co-bogota"
    assert body["coverage"] == [["co", "drugs"], ["co", "money-laundering"], ["pe", "drugs"]]


def test_an_enrolment_request_round_trips_its_almanac() -> None:
    raw = sign_enrolment_request(_request(), OFFICER)
    assert verify_enrolment_request(raw).almanac == BOGOTA


def test_an_empty_almanac_round_trips() -> None:
    card = _verify(_issue(Almanac()))
    assert card.almanac == Almanac() and card.almanac.to_wire() == {
        "languages": [], "posting": "", "coverage": []}


def test_a_renewal_keeps_the_almanac_and_changes_only_the_keys_given() -> None:
    card = _verify(_issue())
    new_key = crypto.generate_signing_key().public
    request = renewal(card, signing_public=new_key)
    assert request.almanac == BOGOTA and request.signing_public == new_key
    assert request.encryption_public == card.encryption_public
    assert renewal(card).signing_public == card.signing_public


def test_a_stored_card_decodes_whole_including_its_validity() -> None:
    raw = _issue()
    assert decode_stored_card(raw) == _verify(raw)


def test_a_card_with_every_field_at_its_limit_fits_the_card_size() -> None:
    longest = max((a.value for a in CrimeArea), key=len)
    almanac = Almanac(languages=("nl", "fr", "de", "en", "es", "pt", "it", "lb"),
                      posting="co-" + "b" * 45,
                      coverage=tuple(Coverage(c, CrimeArea(longest))
                                     for c in COUNTRIES_33[:MAX_COVERAGE]))
    request = EnrolmentRequest("nl/" + "j" * 32, "\u00e9" * MAX_NAME_CHARS,
                               "\u00e9" * MAX_NAME_CHARS, OFFICER.public, ENCRYPTION,
                               almanac.validate())
    raw = issue_card(request, node_id="nl", node_key=NODE, version=1, now=NOW,
                     valid_for_ms=86_400_000)
    assert len(raw) < MAX_CARD_BYTES
    assert _verify(raw).almanac == almanac
    assert verify_enrolment_request(sign_enrolment_request(request, OFFICER)).almanac == almanac


# --- strict decoding ------------------------------------------------------------------------


BAD_ALMANAC = {
    "a language that is not ISO 639-1": {"languages": ["xx"]},
    "an upper-case language": {"languages": ["NL"]},
    "a language that is not text": {"languages": [b"nl"]},
    "a repeated language": {"languages": ["nl", "nl"]},
    "too many languages": {"languages": ["nl", "fr", "de", "en", "es", "pt", "it", "lb",
                                         "pl"]},
    "languages not a list": {"languages": "nl"},
    "a posting with no country": {"posting": "bogota"},
    "a posting in an unknown country": {"posting": "xx-bogota"},
    "a posting with spaces": {"posting": "co bogota"},
    "a posting in upper case": {"posting": "CO-BOGOTA"},
    "a posting too long": {"posting": "co-" + "b" * 60},
    "a posting that is not text": {"posting": None},
    "a coverage country that is not ISO 3166": {"coverage": [["xx", "drugs"]]},
    "a coverage country in upper case": {"coverage": [["CO", "drugs"]]},
    "EU 'uk' for the United Kingdom": {"coverage": [["uk", "drugs"]]},
    "a crime area outside the vocabulary": {"coverage": [["co", "drug"]]},
    "a coverage entry of three parts": {"coverage": [["co", "drugs", "x"]]},
    "a coverage entry as text": {"coverage": ["co/drugs"]},
    "a repeated coverage entry": {"coverage": [["co", "drugs"], ["co", "drugs"]]},
    "too many coverage entries": {"coverage": [[c, "drugs"] for c in COUNTRIES_33]},
    "coverage not a list": {"coverage": {"co": "drugs"}},
    "a missing almanac field": {"posting": _DROP},
    "an unknown extra field": {"desk": "bogota"},
}


@pytest.mark.parametrize("case", sorted(BAD_ALMANAC))
def test_a_card_with_a_bad_almanac_field_is_refused(case: str) -> None:
    with pytest.raises(Malformed):
        _verify(_sign_card(_card_wire(**BAD_ALMANAC[case])))


@pytest.mark.parametrize("case", sorted(BAD_ALMANAC))
def test_an_enrolment_request_with_a_bad_almanac_field_is_refused(case: str) -> None:
    body = {k: v for k, v in _card_wire(**BAD_ALMANAC[case]).items()
            if k not in ("version", "valid_from", "valid_until")}
    packed = codec.pack(body)
    raw = codec.pack([packed, crypto.sign(OFFICER, REQUEST_DOMAIN + packed)])
    with pytest.raises(Malformed):
        verify_enrolment_request(raw)


def test_the_limits_are_the_documented_ones() -> None:
    assert (MAX_LANGUAGES, MAX_COVERAGE) == (8, 32)
    assert len(BAD_ALMANAC["too many coverage entries"]["coverage"]) == MAX_COVERAGE + 1


def test_a_node_will_not_issue_a_card_over_the_limits() -> None:
    over = Almanac(coverage=tuple(Coverage(c, CrimeArea.DRUGS) for c in COUNTRIES_33))
    with pytest.raises(Malformed, match="at most 32 coverage entries"):
        _issue(over)


def test_changing_the_coverage_breaks_the_signature() -> None:
    raw = _issue()
    body, signature = codec.unpack(raw, what="card", max_bytes=MAX_CARD_BYTES)
    forged_body = codec.pack({**codec.unpack(body, what="body", max_bytes=MAX_CARD_BYTES),
                              "coverage": [["co", "firearms"]]})
    with pytest.raises(BadSignature):
        _verify(codec.pack([forged_body, signature]))


# --- what an officer types ------------------------------------------------------------------


def test_create_forgives_case_and_repeats_then_checks_strictly() -> None:
    almanac = Almanac.create(languages=[" ES", "nl", "es"], posting=" CO-Bogota ",
                             coverage=["CO/Drugs", "co/drugs ", "pe/drugs"])
    assert almanac.languages == ("es", "nl")
    assert almanac.posting == "co-bogota"
    assert [str(c) for c in almanac.coverage] == ["co/drugs", "pe/drugs"]


@pytest.mark.parametrize(("text", "message"), [
    ("co-drugs", "must be COUNTRY/AREA"),
    ("co/", "must be COUNTRY/AREA"),
    ("/drugs", "must be COUNTRY/AREA"),
    ("xx/drugs", "'xx' is not an ISO 3166-1 alpha-2 country code"),
    ("uk/drugs", "use 'gb'"),
    ("co/drug", "unknown crime area 'drug' in --cover 'co/drug'; one of: drugs, firearms"),
])
def test_a_typed_coverage_that_is_wrong_says_why(text: str, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        Almanac.create(coverage=[text])


def test_search_criteria_must_hold_together() -> None:
    a = Almanac.create(languages=["es"], coverage=["co/firearms", "pe/drugs"])
    assert a.matches(country="co") and a.matches(area=CrimeArea.DRUGS)
    assert not a.matches(country="co", area=CrimeArea.DRUGS)  # not one entry
    assert a.matches(country="pe", area=CrimeArea.DRUGS, language="es")
    assert not a.matches(country="pe", language="nl")
    assert a.matches() and Almanac().matches() and not Almanac().matches(country="co")
