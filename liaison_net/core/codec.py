"""Canonical msgpack: one byte string per value, so signatures cover exact bytes.

Canonical means: maps with string keys in sorted order, the shortest integer encodings,
str for text and bin for bytes, no floats, no extension types, no trailing bytes. Rather
than trust an unpacker's leniency, decoding re-encodes what it read and refuses the input
unless the bytes are identical: any second encoding of the same value is refused.

The check is done in two steps so that the common, valid input costs a few C calls, not a
walk in Python (docs/performance.md): the number of bytes that could open a container
bounds the containers (at most 64 cannot nest deeper than 64); while unpacking, a map hook
gives up at the first map whose keys are not in sorted order (key orders seen sorted before
are looked up, not sorted again); then re-encoding the decoded value as it is (dicts keep
the wire's key order) with single-precision floats must give the input back (a double
changes length), and, when a float32 type byte (0xca) occurs anywhere in the input,
re-encoding in double precision must too (a float32 changes length). Input that fails any
of these goes through the original checks (float walk, sort and re-encode), which name the
problem: the fast step only ever accepts, so what is refused, and with which error, is
unchanged (tests/core/test_codec_fastpath.py holds the two to agreement).
"""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec

from liaison_net.errors import LimitExceeded, Malformed

MAX_CONTAINER_ITEMS = 4096
_MAX_DEPTH = 64


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


def pack_built(value: dict[str, Any]) -> bytes:
    """``pack`` of a map its caller built in canonical form already, packed as it is,
    without ``_canonicalise``'s walk and re-sorting (a few µs per value; it was most of the
    cost of a destination's "relayed" statements, docs/performance.md, lane dest16).

    Only for fixed shapes: str keys written in sorted order, values str, bytes, int, bool,
    None or lists of those, never a float: the caller checks the types it cannot vouch
    for (tests compare with ``pack`` for each caller's shape). What it cannot encode is
    ``Malformed``, never an untyped error out of a caller's loop: an int past 64 bits or a
    lone surrogate, as ``pack`` refuses them, and a str or int subclass (``pack`` packs
    those; the callers hand over exact types)."""
    try:
        return _BUILT.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Malformed(f"value cannot be encoded: {exc}") from exc


# msgspec writes maps in insertion order, ints in their shortest form, str as str and bytes
# as bin, as msgpack's ``packb(use_bin_type=True)`` does, in a third of its time (no Packer
# made per call); tests/core/test_pack_built.py holds the two to agreement.
_BUILT = msgspec.msgpack.Encoder()


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
    if len(raw) - len(raw.translate(None, _CONTAINER_BYTES)) <= _MAX_DEPTH:
        # At most 64 bytes that could open a container (fixmap, fixarray, map and array
        # 16/32; bytes inside strings count too), so at most 64 containers: the nesting
        # cannot exceed the limit. Then the fast step: maps in sorted key order
        # (``_sorted_map`` stops at the first that is not), and one re-encoding of the
        # value as decoded (dicts keep the wire's order) that gives the input back.
        try:
            value = msgpack.unpackb(
                raw, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext,
                object_hook=_sorted_map, max_bin_len=max_bytes, max_str_len=max_bytes,
                max_array_len=MAX_CONTAINER_ITEMS, max_map_len=MAX_CONTAINER_ITEMS,
                max_ext_len=0)
        except Exception:  # the checks below decode it again, and name the fault
            pass
        else:
            if _packs_back_without_floats(value, raw):
                return value
    # Something is off (or merely unusual): the original checks, which name it.
    try:
        value = msgpack.unpackb(
            raw, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext,
            max_bin_len=max_bytes, max_str_len=max_bytes, max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS, max_ext_len=0)
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


# The type bytes that open a map or an array (fixmap, fixarray, array 16/32, map 16/32).
_CONTAINER_BYTES = bytes(range(0x80, 0xA0)) + b"\xdc\xdd\xde\xdf"


class _Unsorted(Exception):
    """A map whose keys are not in sorted order: the fast step gives up on it."""


def _sorted_map(value: dict[Any, Any]) -> dict[Any, Any]:
    # A repeated key leaves the dict shorter than the wire: the re-encoding catches it. Keys
    # of mixed types (str and bytes) make ``sorted`` raise TypeError: a give-up too. The key
    # orders seen sorted before (a header's, a tag's: a few shapes) are looked up instead.
    keys = tuple(value)
    if keys in _SORTED_KEYS:
        return value
    if list(keys) != sorted(keys):
        raise _Unsorted
    if (len(_SORTED_KEYS) < _MAX_SORTED_KEYS and len(keys) <= 16
            and sum(map(len, keys)) <= 512):
        _SORTED_KEYS.add(keys)
    return value


# Key tuples known to be in sorted order (a pure fact about them), bounded in number and in
# size: only those of at most 16 keys and 512 characters (or bytes) in all are remembered.
_SORTED_KEYS: set[tuple[Any, ...]] = set()
_MAX_SORTED_KEYS = 256


def _packs_back_without_floats(value: Any, raw: bytes) -> bool:
    """True only when ``value`` packs back to ``raw`` exactly and holds no float. Packed in
    single precision, a double changes length; when no float32 type byte (0xca) occurs
    anywhere in ``raw`` none can hide there either, so one encoding decides; otherwise the
    double-precision encoding must give ``raw`` too (a float32 changes length in it)."""
    try:
        if msgpack.packb(value, use_bin_type=True, use_single_float=True) != raw:
            return False
    except (OverflowError, ValueError, TypeError):
        return False  # only a float can fail to pack in single precision (1e300)
    return b"\xca" not in raw or bool(msgpack.packb(value, use_bin_type=True) == raw)


def _contains_float(value: Any, depth: int) -> bool:
    if depth > _MAX_DEPTH:
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
    if value.keys() == expected:  # the usual case, compared in C
        return value
    keys = set(value)
    if missing := expected - keys:
        raise Malformed(f"{what} is missing field(s): {', '.join(sorted(missing))}")
    if extra := keys - expected:
        names = ", ".join(sorted(map(str, extra)))
        raise Malformed(f"{what} has unknown field(s): {names:.160}")
    return value


def exact_bytes(value: object, size: int, name: str) -> bytes:
    """A decoded field that must be bytes of exactly ``size`` (a key, an id, a hash)."""
    if not isinstance(value, bytes) or len(value) != size:
        raise Malformed(f"{name} must be {size} bytes")
    return value


def small_int(value: object, name: str) -> int:
    """A decoded field that must be an integer in [0, 2**53) (a serial, a time in ms)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 53:
        raise Malformed(f"{name} must be a non-negative integer")
    return value
