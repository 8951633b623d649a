"""Envelope content: canonical encoding, strict decoding, nothing a terminal would act on."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core import codec
from liaison_net.core.content import (
    MAX_ATTACHMENTS,
    MAX_SUBJECT_CHARS,
    Attachment,
    Content,
    decode,
    encode,
)
from liaison_net.core.limits import Limits
from liaison_net.errors import LimitExceeded, Malformed

printable = st.characters(exclude_categories=("Cc", "Cs"))
subjects = st.text(printable, min_size=1, max_size=MAX_SUBJECT_CHARS).filter(str.strip)
texts = st.text(st.one_of(printable, st.sampled_from("\n\t")), max_size=400)
attachments = st.builds(
    Attachment,
    name=st.text(printable, min_size=1, max_size=40).filter(
        lambda s: s.strip() != "" and "/" not in s and "\\" not in s),
    media_type=st.sampled_from(["application/pdf", "image/jpeg", "text/plain"]),
    data=st.binary(max_size=200),
)
contents = st.builds(Content, subject=subjects, text=texts,
                     attachments=st.lists(attachments, max_size=3).map(tuple))


def _wire(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"v": 1, "subject": "Cross-border alert", "text": "body",
                             "attachments": []}
    value.update(overrides)
    return value


@given(contents)
def test_content_round_trips_exactly(content: Content) -> None:
    raw = encode(content)
    assert decode(raw) == content
    assert encode(decode(raw)) == raw


def test_encoding_is_the_documented_canonical_map() -> None:
    raw = encode(Content("Alert", "line 1\nline 2"))
    assert codec.unpack(raw, what="t", max_bytes=1024) == _wire(subject="Alert",
                                                                text="line 1\nline 2")


@pytest.mark.parametrize(("value", "message"), [
    (_wire(extra=1), "unknown field"),
    ({k: v for k, v in _wire().items() if k != "text"}, "missing field"),
    (_wire(v=2), "unsupported content version"),
    (_wire(v=True), "unsupported content version"),
    (_wire(subject=b"bytes"), "subject must be a string"),
    (_wire(subject=""), "subject must not be empty"),
    (_wire(subject="   "), "subject must not be empty"),
    (_wire(subject="two\nlines"), "control character U\\+000A"),
    (_wire(subject="\x1b[2Jcleared"), "control character U\\+001B"),
    (_wire(text="csi \x9b31m"), "control character U\\+009B"),
    (_wire(text="back\rspace"), "control character U\\+000D"),
    (_wire(attachments={}), "attachments must be a list"),
    (_wire(attachments=[{"name": "a.pdf", "media_type": "application/pdf"}]), "missing"),
    (_wire(attachments=[{"name": "../etc/passwd", "media_type": "text/plain",
                         "data": b""}]), "plain, non-empty file name"),
    (_wire(attachments=[{"name": "a", "media_type": "pdf", "data": b""}]), "type/subtype"),
    (_wire(attachments=[{"name": "a", "media_type": "text/plain", "data": "str"}]),
     "data must be bytes"),
    ([1, 2], "must be a map"),
])
def test_decode_refuses_malformed_content(value: object, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        decode(codec.pack(value))


def test_decode_refuses_non_canonical_bytes() -> None:
    unsorted = msgpack.packb({"v": 1, "text": "t", "subject": "s", "attachments": []})
    with pytest.raises(Malformed, match="canonical"):
        decode(unsorted)


def test_decode_refuses_trailing_bytes_and_garbage() -> None:
    with pytest.raises(Malformed):
        decode(encode(Content("s", "t")) + b"\x00")
    with pytest.raises(Malformed):
        decode(b"\xc1")


def test_subject_and_text_have_limits() -> None:
    with pytest.raises(LimitExceeded):
        encode(Content("x" * (MAX_SUBJECT_CHARS + 1), ""))
    small = Limits(max_body_bytes=100)
    with pytest.raises(LimitExceeded):
        encode(Content("s", "x" * 101), small)
    with pytest.raises(LimitExceeded):
        decode(encode(Content("s", "x" * 200)), small)
    many = tuple(Attachment(f"a{i}", "text/plain", b"") for i in range(MAX_ATTACHMENTS + 1))
    with pytest.raises(LimitExceeded):
        encode(Content("s", "", many))


def test_encode_refuses_what_decode_refuses() -> None:
    """The sender's client cannot produce content a reader would reject."""
    with pytest.raises(Malformed):
        encode(Content("s", "bell \x07"))
    with pytest.raises(Malformed):
        encode(Content("s", "t", (Attachment("", "text/plain", b""),)))


def test_text_may_be_empty_and_span_lines_with_tabs() -> None:
    assert decode(encode(Content("s", ""))).text == ""
    assert decode(encode(Content("s", "a\tb\nc"))).text == "a\tb\nc"
