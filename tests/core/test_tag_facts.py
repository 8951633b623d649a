"""The usual tag's remembered facts (``ownership._TAG_FACTS``, docs/performance.md, "The
tag's facts remembered"): what the checks found about a tag's fields but ``retain_until``
is reused for the next header with the same values, and nothing else is: the limits are
checked on every header, the handling and TLP rules too, and every header decodes as the
reference decodes it (tests/core/test_header_fastpath.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from liaison_net.core import codec, envelope, ownership
from liaison_net.core.envelope import decode_header
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.errors import LimitExceeded
from tests.core.factories import Officer, make_tag, seal_from
from tests.core.test_header_fastpath import outcome, reference_decode_header

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")


def _fields(raw: bytes) -> dict[str, Any]:
    return dict(msgpack.unpackb(raw, raw=False))


def _changed(raw: bytes, **tag: Any) -> bytes:
    fields = _fields(raw)
    fields["tag"].update(tag)
    return codec.pack(fields)


def _decided_as_the_reference(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    reference = outcome(lambda: reference_decode_header(raw, limits))
    assert outcome(lambda: decode_header(raw, limits)) == reference
    fast = envelope._decode_usual_header(raw, limits)
    assert fast is None or ("ok", fast) == reference
    return reference


def test_a_second_retention_reuses_the_facts_and_decodes_as_the_reference() -> None:
    raw = seal_from(ALICE, [BOB], tag=make_tag(purpose="facts: retention")).header_bytes
    assert _decided_as_the_reference(raw)[0] == "ok"
    remembered = len(ownership._TAG_FACTS)
    later = _changed(raw, retain_until=_fields(raw)["tag"]["retain_until"] + 1)
    fast = envelope._decode_usual_header(later, DEFAULT_LIMITS)
    assert fast is not None and fast.tag.retain_until == _fields(later)["tag"]["retain_until"]
    assert ("ok", fast) == outcome(lambda: reference_decode_header(later))
    assert len(ownership._TAG_FACTS) == remembered  # the same facts: none added


def test_the_limits_are_checked_on_every_header_not_remembered() -> None:
    """Remembered under the default limits, refused under a node's tighter ones."""
    purpose = "facts: a purpose of forty characters...."
    raw = seal_from(ALICE, [BOB], tag=make_tag(purpose=purpose)).header_bytes
    assert _decided_as_the_reference(raw)[0] == "ok"
    for tight in (Limits(max_text_chars=len(purpose) - 1), Limits(max_share_with=2)):
        decided = _decided_as_the_reference(raw, tight)
        assert decided[:2] == ("refused", LimitExceeded)
        assert envelope._decode_usual_header(raw, tight) is None


def test_h3_and_green_need_their_text_whatever_was_remembered() -> None:
    """H0 with no conditions and AMBER with no community are remembered; the same values
    under H3 or TLP:GREEN are refused (their text is required), and the reverse."""
    raw = seal_from(ALICE, [BOB], tag=make_tag(purpose="facts: h3 and green")).header_bytes
    assert _decided_as_the_reference(raw)[0] == "ok"
    for changed in (_changed(raw, handling="H3"), _changed(raw, tlp="GREEN"),
                    _changed(raw, handling="H3", conditions=" "),
                    _changed(raw, tlp="GREEN", community="\x7f")):
        assert _decided_as_the_reference(changed)[0] == "refused"
        assert envelope._decode_usual_header(changed, DEFAULT_LIMITS) is None
    h3 = _changed(raw, handling="H3", conditions="ask first")
    assert _decided_as_the_reference(h3)[0] == "ok"
    assert _decided_as_the_reference(_changed(raw, conditions="ask first"))[0] == "refused"
    assert _decided_as_the_reference(
        _changed(raw, handling="H3", conditions="x" * (DEFAULT_LIMITS.max_conditions_chars
                                                       + 1)))[0] == "refused"


def test_the_facts_are_bounded() -> None:
    raw = seal_from(ALICE, [BOB], tag=make_tag(purpose="facts: bound")).header_bytes
    for i in range(ownership._MAX_TAG_FACTS + 10):
        assert envelope._decode_usual_header(_changed(raw, purpose=f"facts: bound {i}"),
                                             DEFAULT_LIMITS) is not None
    assert len(ownership._TAG_FACTS) <= ownership._MAX_TAG_FACTS
    long_text = _changed(raw, purpose="y" * 200, owner={"node": "nl", "unit": "z" * 200},
                         handling="H3", conditions="c" * 700)
    ownership._TAG_FACTS.clear()
    assert _decided_as_the_reference(long_text)[0] == "ok"
    assert not ownership._TAG_FACTS  # over _MAX_REMEMBERED_TEXT: checked, not remembered


def test_a_frames_signed_message_is_the_one_signed() -> None:
    """``UnverifiedFrame.signed_message`` writes ``signed_message`` inline."""
    sealed = seal_from(ALICE, [BOB])
    frame = envelope.read_frame(sealed.to_bytes())
    assert frame.signed_message == envelope.signed_message(sealed.header_bytes,
                                                           sealed.body_bytes)
    assert frame.signed_message == envelope.signed_digest_message(
        sealed.header_bytes, hashlib.sha256(sealed.body_bytes).digest())
