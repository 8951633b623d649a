"""Length-limited msgpack frames between a node and its worker processes.

A frame is a 4-byte big-endian length, then that many bytes of msgpack. Every limit is
checked before anything is allocated or decoded: the length (``MAX_FRAME_BYTES``), the
items per request (``MAX_ITEMS``), the shape of each item. Anything else is ``BadFrame``,
never an unhandled exception: the reader drops the other side and carries on without it.
"""

from __future__ import annotations

import struct
from typing import IO, Any

import msgpack

from liaison_net.errors import BadFrame

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 8 * 1024 * 1024  # 64 envelopes of the 1 MiB body limit, and some
MAX_ITEMS = 64  # envelopes per request frame
MAX_HELLO_KEYS = 64  # the limits sent first


def encode(obj: Any) -> bytes:
    """One frame: the length, then the msgpack of ``obj`` (bytes stay bytes)."""
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(payload) > MAX_FRAME_BYTES:
        raise BadFrame(f"a frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    """The payload length a header announces, refused above ``MAX_FRAME_BYTES``."""
    if len(header) != HEADER.size:
        raise BadFrame("the stream ended inside a frame header")
    (n,) = HEADER.unpack(header)
    if n > MAX_FRAME_BYTES:
        raise BadFrame(f"a frame announces {n} bytes, more than {MAX_FRAME_BYTES}")
    return int(n)


def decode(payload: bytes) -> Any:
    """The msgpack value of one payload; refuses trailing bytes, ext types, huge arrays."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True,
                               max_array_len=MAX_ITEMS * 4, max_map_len=MAX_HELLO_KEYS,
                               max_bin_len=MAX_FRAME_BYTES, max_str_len=64 * 1024,
                               max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadFrame(f"not one msgpack value: {type(exc).__name__}") from exc


def read_blocking(stream: IO[bytes]) -> Any | None:
    """The next frame from a blocking stream (the worker's stdin); None at a clean end."""
    header = stream.read(HEADER.size)
    if not header:
        return None
    n = frame_length(header)
    payload = stream.read(n)
    if len(payload) != n:
        raise BadFrame("the stream ended inside a frame")
    return decode(payload)


def request(seq: int, items: list[tuple[bytes, str, bytes]]) -> bytes:
    """A verification request: ``[seq, [[raw, principal, public_key], ...]]``."""
    if not 1 <= len(items) <= MAX_ITEMS:
        raise BadFrame(f"a request holds 1 to {MAX_ITEMS} items, not {len(items)}")
    return encode([seq, [list(item) for item in items]])


def parse_request(value: Any) -> tuple[int, list[tuple[bytes, str, bytes]]]:
    """The worker's check of a request frame's shape."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], list) and 1 <= len(value[1]) <= MAX_ITEMS):
        raise BadFrame("a request is [seq, [1..64 items]]")
    items = []
    for item in value[1]:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], bytes)
                and isinstance(item[1], str) and isinstance(item[2], bytes)):
            raise BadFrame("a request item is [raw bytes, principal, public key bytes]")
        items.append((item[0], item[1], item[2]))
    return value[0], items


def parse_answer(value: Any) -> tuple[int, bytes]:
    """The node's check of an answer frame's shape: ``[seq, blob]``, the blob one pickled
    list with, per item asked, the verified envelope's header and body, or None (refused:
    the node verifies it again itself). One pickle per frame, so the classes named in it
    are looked up once per frame, not once per envelope (``verify_pool._CoreOnly``)."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], bytes)):
        raise BadFrame("an answer is [seq, bytes]")
    return value[0], value[1]
