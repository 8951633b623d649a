"""LED Art. 25: what an audit entry carries and which categories it stands for."""

from __future__ import annotations

import json

import pytest

from liaison_net.core import art25
from liaison_net.core.audit import detail
from liaison_net.core.ids import id_to_text
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.errors import Malformed
from tests.core.factories import Officer, make_tag, seal_from

JAN, MARIE, LUC = Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("be/lclaes")


def test_reception_names_justification_inboxes_and_recipients_never_content() -> None:
    env = seal_from(JAN, [MARIE, LUC], b"the plate is NL-42-XK",
                    tag=make_tag(handling=Handling.H2, tlp=Tlp.RED))
    fields = art25.reception(env.header, ["be/mpeeters"], forward=False, recipients=True)
    assert fields == {"purpose": "cross-border drug trafficking investigation",
                      "handling": "H2", "tlp": "RED", "inboxes": ["be/mpeeters"],
                      "recipients": ["be/lclaes", "be/mpeeters"]}
    assert "NL-42-XK" not in detail(**fields)
    assert art25.categories("envelope.accepted", detail(**fields)) == (
        art25.COLLECTION, art25.DISCLOSURE)


def test_a_forward_names_its_original_and_is_a_combination() -> None:
    original = seal_from(JAN, [MARIE])
    forward = seal_from(MARIE, [LUC], ref=original.id)
    fields = art25.reception(forward.header, ["be/lclaes"], forward=True)
    assert fields["forward_of"] == id_to_text(original.id)
    assert fields["consent"] is False
    assert art25.categories("envelope.delivered_to_inbox", detail(**fields)) == (
        art25.COLLECTION, art25.DISCLOSURE, art25.COMBINATION)
    # Not a forward: the original is not named (a reply's ref is not a combination here).
    assert "forward_of" not in art25.reception(forward.header, [], forward=False)


@pytest.mark.parametrize(("event", "expected"), [
    ("envelope.consulted", (art25.CONSULTATION,)),
    ("envelope.relayed", (art25.DISCLOSURE,)),
    ("envelope.purged", (art25.ERASURE,)),
    ("signal.matched", (art25.COMBINATION,)),
    ("login.failed", (art25.LOGIN,)),
    ("envelope.accepted", (art25.COLLECTION,)),  # to another node only: nothing disclosed here
    ("envelope.delivered_to_inbox", (art25.COLLECTION, art25.DISCLOSURE)),
    ("key.rotated", ()),
    ("envelope.expired", ()),  # a transfer given up; the content stays until retain_until
])
def test_categories_by_event(event: str, expected: tuple[str, ...]) -> None:
    assert art25.categories(event, detail(layer="origin", to=["be"])) == expected


def test_categories_of_an_odd_detail_are_the_event_s_own() -> None:
    for odd in ("", "not json", "[1, 2]", json.dumps("x")):
        assert art25.categories("envelope.accepted", odd) == (art25.COLLECTION,)


def test_events_of_each_category_cover_what_categories_finds() -> None:
    assert art25.events_of(frozenset()) == ()
    for category in art25.CATEGORIES:
        events = art25.events_of(frozenset({category}))
        for event in ("envelope.consulted", "envelope.relayed", "envelope.purged",
                      "signal.matched", "login.failed", "pseudonym.evaluated"):
            assert (category in art25.categories(event, "{}")) <= (event in events)


@pytest.mark.parametrize("reason", ["", "   ", "x" * (art25.MAX_REASON_CHARS + 1),
                                    "two\nlines", "tab\there", "bidi \u202e trick",
                                    "nul \x00", "line\u2028separator"])
def test_a_bad_reason_is_refused(reason: str) -> None:
    with pytest.raises(Malformed):
        art25.check_reason(reason)


def test_a_good_reason_is_kept_trimmed() -> None:
    assert art25.check_reason("  joint case LU-BE 2026/117 \u2013 Zo\u00eb  ") == (
        "joint case LU-BE 2026/117 \u2013 Zo\u00eb")
    assert art25.check_reason("x" * art25.MAX_REASON_CHARS) == "x" * art25.MAX_REASON_CHARS
