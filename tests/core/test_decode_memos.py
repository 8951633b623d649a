"""What the usual header's and body's decoding remember (docs/performance.md, "Decode +
verify, fourth round"): the tag's facts (``ownership._TAG_FACTS``: what the checks found
about a tag's fields but ``retain_until``) are reused for the next header with the same
values, and nothing else is: the limits are checked on every header, the handling and TLP
rules too; and the recipients (``envelope._RECIPIENTS``: a checked officer id with its key
id). Bodies of any recipient count split as the reference reads them. Every input decodes
as the reference decodes it (tests/core/test_header_fastpath.py,
tests/core/test_codec_fastpath.py), and each memo is bounded."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest

from liaison_net.core import codec, envelope, ownership
from liaison_net.core.envelope import Body, decode_body, decode_header
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.errors import LimitExceeded, Malformed
from tests.core.factories import Officer, make_tag, seal_from
from tests.core.test_codec_fastpath import reference_decode_body
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


def test_a_remembered_recipient_is_the_pair_checked_and_a_bad_one_is_not_remembered() -> None:
    raw = seal_from(ALICE, [BOB]).header_bytes
    assert _decided_as_the_reference(raw)[0] == "ok"
    key_id = _fields(raw)["recipients"][0][1]
    assert envelope._RECIPIENTS[("be/mpeeters", key_id)] == envelope.Recipient(
        "be/mpeeters", key_id)
    fields = _fields(raw)
    for bad in ("be/MPeeters", "be", "xx/", "be/mpeeters/x"):
        fields["recipients"] = [[bad, key_id]]
        changed = codec.pack(fields)
        assert _decided_as_the_reference(changed)[:2] == ("refused", Malformed)
        assert (bad, key_id) not in envelope._RECIPIENTS
    other_key = bytes(16)
    fields["recipients"] = [["be/mpeeters", other_key]]  # the same officer, another key
    fast = envelope._decode_usual_header(codec.pack(fields), DEFAULT_LIMITS)
    assert fast is not None and fast.recipients[0].key_id == other_key


def test_the_remembered_recipients_are_bounded() -> None:
    for i in range(envelope._MAX_RECIPIENTS + 10):
        envelope._recipient((f"be/officer{i}", bytes(16)))
    assert len(envelope._RECIPIENTS) <= envelope._MAX_RECIPIENTS


@pytest.mark.parametrize("recipients", [1, 2, 15, 16, 64, 65, 300])
def test_bodies_of_any_count_split_as_the_reference_reads_them(recipients: int) -> None:
    """Counts past the default limit too (a node's own larger limits)."""
    wraps = tuple(bytes([i % 256]) * 80 for i in range(recipients))
    raw = codec.pack(Body(nonce=b"n" * 24, wraps=wraps, ciphertext=b"c" * 40).to_wire())
    assert envelope._split_canonical_body(raw, recipients) == (b"n" * 24, wraps, b"c" * 40)
    nonce, reference_wraps, ciphertext = reference_decode_body(raw, recipients)
    assert decode_body(raw, recipients) == Body(nonce, reference_wraps, ciphertext)
    for wrong in (recipients - 1, recipients + 1):
        assert envelope._split_canonical_body(raw, wrong) is None


def test_a_full_tag_memo_starts_again_so_a_tag_in_use_is_remembered() -> None:
    """Kept full, the first ``_MAX_TAG_FACTS`` tags seen (a peer's junk, a year's cases)
    would keep every later tag out of the memo until a restart (review16e)."""
    raw = seal_from(ALICE, [BOB], tag=make_tag(purpose="facts: in use")).header_bytes
    ownership._TAG_FACTS.clear()
    for i in range(ownership._MAX_TAG_FACTS):
        assert envelope._decode_usual_header(_changed(raw, purpose=f"facts: junk {i}"),
                                             DEFAULT_LIMITS) is not None
    assert len(ownership._TAG_FACTS) == ownership._MAX_TAG_FACTS
    assert _decided_as_the_reference(raw)[0] == "ok"
    assert len(ownership._TAG_FACTS) == 1
    assert [key[2] for key in ownership._TAG_FACTS] == ["facts: in use"]


def test_a_full_recipient_memo_starts_again_so_a_pair_in_use_is_remembered() -> None:
    envelope._RECIPIENTS.clear()
    for i in range(envelope._MAX_RECIPIENTS):
        envelope._recipient((f"be/junk{i}", bytes(16)))
    raw = seal_from(ALICE, [BOB]).header_bytes
    assert _decided_as_the_reference(raw)[0] == "ok"
    key_id = _fields(raw)["recipients"][0][1]
    assert list(envelope._RECIPIENTS) == [("be/mpeeters", key_id)]
