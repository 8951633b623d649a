"""The audit table's short spellings (``core/audit.py``, migration 19): whatever the text,
the stored form reads back to exactly it, since the hash covers the text, not the form."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core.audit import (
    DETAIL_MARK,
    DETAIL_TOKENS,
    EVENT_CODES,
    detail,
    detail_text,
    event_name,
    stored_detail,
    stored_event,
)
from liaison_net.store.schema import DETAIL_TOKENS_19, EVENT_CODES_19

ACCEPTED = detail(handling="H0", inboxes=[], layer="origin", purpose="liaison bench",
                  recipients=["be/bench-desk"], tlp="AMBER", to=["be"])

#: Text built from the tokens' own pieces, quotes, colons and control characters: what
#: could fool a replacement, if anything could.
_PIECES = st.sampled_from([*DETAIL_TOKENS, '"', ":", "\\", DETAIL_MARK, "\x01", "\x16", "a",
                           "{", "}", ","])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_any_text_reads_back_as_it_was(text: str) -> None:
    assert detail_text(stored_detail(text)) == text


@given(st.dictionaries(st.sampled_from(["handling", "inboxes", "layer", "purpose", "tlp",
                                        "to", "peer", "kind", "ref", "code", "x"]),
                       st.one_of(st.text(max_size=8), st.lists(st.text(max_size=6),
                                                               max_size=3),
                                 st.integers())))
def test_any_detail_reads_back_and_its_values_stay_findable(fields: dict[str, object]) -> None:
    text = detail(**fields)
    stored = stored_detail(text)
    assert detail_text(stored) == text
    for value in fields.values():  # an export finds an id by its quoted JSON text
        if isinstance(value, str) and "/" in value:
            assert json.dumps(value) in stored


def test_the_frequent_detail_is_stored_in_less_than_half() -> None:
    stored = stored_detail(ACCEPTED)
    assert stored.startswith(DETAIL_MARK) and len(stored) < len(ACCEPTED) // 2
    assert '"be/bench-desk"' in stored
    assert stored_detail("{}") == "{}"  # nothing to save: stored as it is


def test_events_by_code_and_any_other_by_name() -> None:
    assert stored_event("envelope.accepted") == "1"
    assert stored_event("test.event") == "test.event"
    with pytest.raises(ValueError):
        stored_event("25")  # would read back as whatever code 25 comes to name
    assert event_name("1") == "envelope.accepted"
    assert event_name("envelope.accepted") == "envelope.accepted"  # a row from before
    assert len(set(EVENT_CODES.values())) == len(EVENT_CODES)
    assert all(c.isdigit() and not n.isdigit() for n, c in EVENT_CODES.items())


def test_the_registries_only_grow_from_what_migration_19_wrote() -> None:
    assert list(EVENT_CODES.items())[:len(EVENT_CODES_19)] == [
        (n, c) for c, n in EVENT_CODES_19]
    assert DETAIL_TOKENS[:len(DETAIL_TOKENS_19)] == DETAIL_TOKENS_19
    assert len(DETAIL_TOKENS) <= 30  # codes 1-30; 31 is the mark
    assert all(not any(ch < " " for ch in t) for t in DETAIL_TOKENS)


def test_every_code_in_use_was_written_by_a_migration() -> None:
    """A code the binary writes must be known to every binary that can open the database:
    one added without a migration would pass the schema-version check of an older node on
    the same database, which would read it literally and report a broken chain. So a new
    code comes with a migration whose frozen list holds it (as migration 19's does)."""
    assert list(EVENT_CODES.items()) == [(n, c) for c, n in EVENT_CODES_19]
    assert DETAIL_TOKENS == DETAIL_TOKENS_19


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)


@given(st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=6))
def test_a_detail_is_the_compact_sorted_json_of_its_fields(fields: dict[str, object]) -> None:
    """``detail`` encodes with one encoder made once: the same text as ``json.dumps`` with
    sorted keys and compact separators, since the audit hash covers that text."""
    assert detail(**fields) == json.dumps(fields, sort_keys=True, separators=(",", ":"))
