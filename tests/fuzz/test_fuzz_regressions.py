"""Inputs the fuzz harnesses reported, kept as regression tests (minimized bytes literals).

Each input once made a harness fail; each must now be refused with a typed error and pass
its harness. See docs/reliability.md (fuzzing) for how they were found.
"""

from __future__ import annotations

import pytest

from fuzz import fuzz_envelope, fuzz_signal, seeds
from liaison_net.core import codec, crypto, sealing
from liaison_net.core.envelope import Precedence, decode_header, encode_frame, signed_message
from liaison_net.core.signals import Severity, SignalAnnex
from liaison_net.errors import Malformed

# Signal harness, annex mode: severity "h\u0131gh" (dotless i). "h\u0131gh".upper() is
# "HIGH", so Severity.from_label accepted it and the annex re-encoded as "high": a second
# encoding of the same signed header, which canonical decoding promises never to accept.
ANNEX_DOTLESS_I = b"\x01\x82\xaapseudonyms\x90\xa8severity\xa5h\xc4\xb1gh"


def test_annex_with_a_non_ascii_severity_label_is_refused() -> None:
    wire = codec.unpack(ANNEX_DOTLESS_I[1:], what="annex", max_bytes=1024)
    with pytest.raises(Malformed, match="severity"):
        SignalAnnex.from_wire(wire)
    fuzz_signal.test_one_input(ANNEX_DOTLESS_I)


@pytest.mark.parametrize("label", ["h\u0131gh", "cr\u0131t\u0131cal", "MEDIUM", "Low", "low "])
def test_severity_takes_exactly_the_lowercase_ascii_labels(label: str) -> None:
    with pytest.raises(Malformed):
        Severity.from_label(label)
    assert [Severity.from_label(s.label) for s in Severity] == list(Severity)


# Envelope harness, signed mode: the same flaw in the header's precedence. The harness signs
# the header and body it is given with the seed signer's key, so this header (valid but for
# its precedence "pr\u0131ority") reached decode_header and was accepted as "priority".
# (The header has since gained the field ``original``, nil here: issue 14.)
HEADER_DOTLESS_I = (
    b"\x8f\xa7consent\xc0\xa7created\xcf\x00\x00\x01\xa1\xeeV^\x00\xa7expires\xcf\x00\x00\x01"
    b"\xa1\xf0\r\xd2\x00\xa2id\xc4\x10\x01\xa1\xeeV^\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\xa4kind\xa7message\xa8original\xc0"
    b"\xaaprecedence\xa9pr\xc4\xb1ority\xaarecipients\x91\x92\xabbe/"
    b"jpeeters\xc4\x10\xf4\x88\xf4,\xe5\xba\xb4\xa1\xca\xa8;\xab\x993\xd8\xb3\xa3ref\xc0\xa6"
    b"sender\xabnl/jdevries\xaasender_key\xc4\x10[\x19\xb3\xe5;\xc7+\xe9Q\r\x1bcp\xaf,\xd0\xa6"
    b"signal\xc0\xa3tag\x8a\xa9community\xa0\xaaconditions\xa0\xaaevaluation\x82\xa8accuracy"
    b"\x02\xa6source\xa1B\xa8handling\xa2H0\xa5owner\x82\xa4node\xa2nl\xa4unit\xa1u\xb1"
    b"permitted_actions\x92\xa8evidence\xa7forward\xa7purpose\xa1p\xacretain_until\xcf\x00"
    b"\x00\x01\xa3\xbd\xd2\xb6\x00\xaashare_with\x92\xa2be\xa2nl\xa3tlp\xa5AMBER\xa7urgency"
    b"\xc0\xa7version\x01"
)
BODY_ZEROS = (b"\x83\xaaciphertext\xc4\x10" + bytes(16) + b"\xa5nonce\xc4\x18" + bytes(24)
              + b"\xa5wraps\x91\xc4P" + bytes(80))


def test_header_with_a_non_ascii_precedence_label_is_refused() -> None:
    with pytest.raises(Malformed, match="precedence"):
        decode_header(HEADER_DOTLESS_I)
    fuzz_envelope.test_one_input(seeds.signed_parts_input(HEADER_DOTLESS_I, BODY_ZEROS))
    # Not vacuous: with the ASCII label the same signed input verifies all the way through.
    ascii_header = HEADER_DOTLESS_I.replace(b"\xa9pr\xc4\xb1ority", b"\xa8priority")
    signature = crypto.sign(seeds.SIGNER, signed_message(ascii_header, BODY_ZEROS))
    frame = encode_frame(ascii_header, BODY_ZEROS, seeds.SIGNER.key_id, signature)
    env = sealing.verify(frame, seeds.lookup, now=seeds.NOW)
    assert env.header.precedence is Precedence.PRIORITY


@pytest.mark.parametrize("label", ["pr\u0131ority", "fla\u017fh", "\u0131mmediate", "Flash"])
def test_precedence_takes_exactly_the_lowercase_ascii_labels(label: str) -> None:
    with pytest.raises(Malformed):
        Precedence.from_label(label)
    assert [Precedence.from_label(p.label) for p in Precedence] == list(Precedence)
