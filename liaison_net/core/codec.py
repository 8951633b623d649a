"""Canonical msgpack: one byte string per value, so signatures cover exact bytes.

Canonical means: maps with string keys in sorted order, the shortest integer encodings,
str for text and bin for bytes, no floats, no extension types, no trailing bytes. Rather
than trust an unpacker's leniency, decoding re-encodes what it read and refuses the input
unless the bytes are identical: any second encoding of the same value is refused.
"""

from __future__ import annotations

from typing import Any

import msgpack

from liaison_net.errors import LimitExceeded, Malformed

_MAX_CONTAINER_ITEMS = 4096


def _canonicalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonicalise(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonicalise(v) for v in value]
    if isinstance(value, float):
        raise Malformed("floats are not allowed in canonical encoding")
    return value


def pack(value: Any) -> bytes:
    """Encode a value of dicts (str keys), lists, str, bytes, int, bool and None."""
    try:
        return bytes(msgpack.packb(_canonicalise(value), use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise Malformed(f"value cannot be encoded: {exc}") from exc


def _refuse_ext(code: int, data: bytes) -> Any:
    raise Malformed(f"msgpack extension type {code} is not allowed")


def unpack(raw: bytes, *, what: str, max_bytes: int) -> Any:
    """Decode canonical bytes, refusing oversize, malformed and non-canonical input."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Malformed(f"{what} must be bytes")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise LimitExceeded(f"{what} is {len(raw)} bytes, limit {max_bytes}")
    if not raw:
        raise Malformed(f"{what} is empty")
    try:
        value = msgpack.unpackb(
            raw,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=_MAX_CONTAINER_ITEMS,
            max_map_len=_MAX_CONTAINER_ITEMS,
            max_ext_len=0,
        )
    except Malformed as exc:
        raise Malformed(f"{what}: {exc.detail}") from exc
    except msgpack.ExtraData as exc:
        raise Malformed(f"{what} has trailing bytes") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # msgpack signals truncation, bad UTF-8, bad formats and over-limit containers with
        # ValueError subclasses (FormatError, StackError, OutOfData ...).
        raise Malformed(f"{what} is not valid msgpack ({type(exc).__name__})") from exc
    if _contains_float(value, depth=0):
        raise Malformed(f"{what} contains a float")
    if pack(value) != raw:
        raise Malformed(f"{what} is not canonically encoded")
    return value


def _contains_float(value: Any, depth: int) -> bool:
    if depth > 64:
        raise Malformed("nesting is too deep")
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_contains_float(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_contains_float(v, depth + 1) for v in value)
    return False


def exact_map(what: str, value: object, expected: set[str]) -> dict[str, Any]:
    """A decoded map with exactly the expected field names: none missing, none extra."""
    if not isinstance(value, dict):
        raise Malformed(f"{what} must be a map")
    keys = set(value)
    if missing := expected - keys:
        raise Malformed(f"{what} is missing field(s): {', '.join(sorted(missing))}")
    if extra := keys - expected:
        names = ", ".join(sorted(map(str, extra)))
        raise Malformed(f"{what} has unknown field(s): {names:.160}")
    return value
