"""An attacker's msgpack, written by hand (review16c): every value of a valid header
re-encoded in any form msgpack allows (an int in a longer or signed form, as a float, a
bool or a timestamp extension; text as bin and bytes as str; maps and arrays in their longer
forms, swapped, keys reordered or repeated), so that msgspec's typed decoder
(``envelope._decode_usual_header``) meets what ``codec.pack`` never writes. Whatever the
fast path accepts, the reference accepts with the same header; ``decode_header`` decides
every input as the reference does, and raises nothing but our typed errors."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core import envelope
from liaison_net.core.envelope import Kind, Precedence, Urgency, decode_header, read_frame
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.ownership import Handling, Tlp
from tests.core.factories import Officer, make_tag, seal_from
from tests.core.test_header_fastpath import outcome, reference_decode_header

ALICE, BOB, CAROL = Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("lu/cweber")
HEADERS = [read_frame(e.to_bytes()).header_bytes for e in (
    seal_from(ALICE, [BOB]),
    seal_from(ALICE, [BOB, CAROL], kind=Kind.REQUEST, urgency=Urgency.URGENT_DIRECT,
              precedence=Precedence.FLASH),
    seal_from(ALICE, [BOB], tag=make_tag(handling=Handling.H3, conditions="ask first",
                                         tlp=Tlp.GREEN, community="benelux-cid")),
)]


def _int_forms(n: int) -> list[bytes]:
    forms = []
    if 0 <= n < 0x80 or -32 <= n < 0:
        forms.append(struct.pack("b", n) if n < 0 else bytes([n]))
    for code, fmt, lo, hi in ((0xCC, ">B", 0, 1 << 8), (0xCD, ">H", 0, 1 << 16),
                              (0xCE, ">I", 0, 1 << 32), (0xCF, ">Q", 0, 1 << 64),
                              (0xD0, ">b", -(1 << 7), 1 << 7), (0xD1, ">h", -(1 << 15), 1 << 15),
                              (0xD2, ">i", -(1 << 31), 1 << 31),
                              (0xD3, ">q", -(1 << 63), 1 << 63)):
        if lo <= n < hi:
            forms.append(bytes([code]) + struct.pack(fmt, n))
    if abs(n) < 1 << 24:
        forms.append(b"\xca" + struct.pack(">f", n))
    if abs(n) < 1 << 53:
        forms.append(b"\xcb" + struct.pack(">d", n))
    if n in (0, 1):
        forms.append(b"\xc3" if n else b"\xc2")
    if 0 <= n < 1 << 32:  # timestamp 32 (ext -1): an int's seconds
        forms.append(b"\xd6\xff" + struct.pack(">I", n))
    return forms


def _sized(data: bytes, small: int | None, codes: tuple[int, int, int]) -> list[bytes]:
    n, forms = len(data), []
    if small is not None and n < 32:
        forms.append(bytes([small | n]) + data)
    for code, fmt, limit in zip(codes, (">B", ">H", ">I"), (1 << 8, 1 << 16, 1 << 32),
                                strict=True):
        if n < limit:
            forms.append(bytes([code]) + struct.pack(fmt, n) + data)
    return forms


def _str_forms(text: bytes) -> list[bytes]:
    return _sized(text, 0xA0, (0xD9, 0xDA, 0xDB))


def _bin_forms(data: bytes) -> list[bytes]:
    return _sized(data, None, (0xC4, 0xC5, 0xC6))


def _head(n: int, small: int, c16: int, c32: int) -> list[bytes]:
    forms = [bytes([c16]) + struct.pack(">H", n), bytes([c32]) + struct.pack(">I", n)]
    return ([bytes([small | n])] if n < 16 else []) + forms


@st.composite
def crafted(draw: st.DrawFn, value: Any) -> bytes:
    """Some msgpack encoding of ``value``, most often the canonical one."""
    odd = draw(st.integers(0, 9)) == 0
    if value is None:
        return draw(st.sampled_from([b"\xc0", b"\xc2", b"\xc0"])) if odd else b"\xc0"
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        return draw(st.sampled_from(_int_forms(value))) if odd else msgpack.packb(value)
    if isinstance(value, str):
        utf8 = value.encode()
        if not odd:
            return bytes(msgpack.packb(value))
        return draw(st.sampled_from(_str_forms(utf8) + _bin_forms(utf8)
                                    + [b"\xc7" + bytes([len(utf8), 1]) + utf8]))
    if isinstance(value, bytes):
        if not odd:
            return bytes(msgpack.packb(value, use_bin_type=True))
        forms = [*_bin_forms(value), b"\xc7" + bytes([len(value), 5]) + value]
        if len(value) in (4, 8):
            forms.append(bytes([0xD6 if len(value) == 4 else 0xD7, 0xFF]) + value)
        try:
            value.decode()
            forms += _str_forms(value)
        except UnicodeDecodeError:
            pass
        return draw(st.sampled_from(forms))
    if isinstance(value, list):
        items = [draw(crafted(v)) for v in value]
        heads = _head(len(items), 0x90, 0xDC, 0xDD)
        head = draw(st.sampled_from(heads)) if odd else heads[0]
        return head + b"".join(items)
    assert isinstance(value, dict)
    keys = list(value)
    if odd:
        keys = draw(st.permutations(keys))
        if draw(st.booleans()):
            keys.append(draw(st.sampled_from(keys)))  # a key repeated
    parts = [draw(crafted(k)) + draw(crafted(value[k])) for k in keys]
    heads = _head(len(parts), 0x80, 0xDE, 0xDF)
    if odd and draw(st.booleans()):  # an array where a map is
        return draw(st.sampled_from(_head(len(parts) * 2, 0x90, 0xDC, 0xDD))) + b"".join(parts)
    head = draw(st.sampled_from(heads)) if odd else heads[0]
    return head + b"".join(parts)


@settings(max_examples=1500, deadline=None)
@given(raw=st.sampled_from(HEADERS).flatmap(lambda h: crafted(msgpack.unpackb(h))))
def test_hand_made_msgpack_is_decided_as_the_reference_decides(raw: bytes) -> None:
    reference = outcome(lambda: reference_decode_header(raw))
    assert outcome(lambda: decode_header(raw)) == reference
    fast = envelope._decode_usual_header(raw, DEFAULT_LIMITS)
    assert fast is None or ("ok", fast) == reference
