"""Retention: what is left of an envelope once its tag's ``retain_until`` has passed.

At ``retain_until`` every node purges the content of an envelope and keeps its **signed
tag skeleton**: the header bytes exactly as received (sender, recipients, times and the
ownership tag, all in the clear), the signer key id and the signature; the body (the
wrapped content keys, the nonce and the ciphertext) is dropped and only its SHA-256 and
length are recorded. Wire form (canonical msgpack, see docs/protocol.md)::

    skeleton = {skeleton: 1, header: bin, body_sha256: bin(32), body_length: int,
                signer_key_id: bin(16), signature: bin(64)}

It is a map, where an envelope frame is an array of 5, so neither is ever mistaken for
the other: ``envelope.read_frame`` refuses a skeleton and ``decode_skeleton`` a frame.

The signature covers the header and the body's SHA-256 (``envelope.signed_message``), so
a skeleton still verifies under its signer's key with the body gone
(``tagflow.verify_original``); the same form is what a forward carries of its original
(header ``original``). The store's purge audit entry (``envelope.purged``, in the
hash-chained log) also binds the body's SHA-256. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from liaison_net.core import codec
from liaison_net.core.crypto import KEY_ID_BYTES, SIGNATURE_BYTES
from liaison_net.core.envelope import Header, decode_header, read_frame
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.errors import LimitExceeded, Malformed

SKELETON_VERSION = 1
DIGEST_BYTES = 32
_FIELDS = {"skeleton", "header", "body_sha256", "body_length", "signer_key_id", "signature"}
_OVERHEAD = 256  # the map's keys, the digest, key id, signature and prefixes, generously


@dataclass(frozen=True)
class Skeleton:
    """The signed tag skeleton of a purged envelope, or of a forward's original: header,
    body digest and signature, which verify without the body."""

    header_bytes: bytes
    body_sha256: bytes
    body_length: int
    signer_key_id: bytes
    signature: bytes

    def header(self, limits: Limits = DEFAULT_LIMITS) -> Header:
        """The header (and so the tag): verified when the envelope was accepted, decoded
        strictly again here."""
        return decode_header(self.header_bytes, limits)

    def to_bytes(self) -> bytes:
        return codec.pack({
            "skeleton": SKELETON_VERSION, "header": self.header_bytes,
            "body_sha256": self.body_sha256, "body_length": self.body_length,
            "signer_key_id": self.signer_key_id, "signature": self.signature,
        })


def body_digest(body_bytes: bytes) -> bytes:
    return hashlib.sha256(body_bytes).digest()


def skeleton_of(frame_raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Skeleton:
    """The skeleton of a stored envelope frame: header, signer key id and signature kept,
    the body replaced by its SHA-256 and length."""
    frame = read_frame(frame_raw, limits)
    return Skeleton(header_bytes=frame.header_bytes, body_sha256=body_digest(frame.body_bytes),
                    body_length=len(frame.body_bytes), signer_key_id=frame.signer_key_id,
                    signature=frame.signature)


def make_skeleton(frame_raw: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """``skeleton_of`` encoded canonically."""
    return skeleton_of(frame_raw, limits).to_bytes()


def decode_skeleton(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Skeleton:
    """Strictly decode skeleton bytes: canonical, the exact field set, exact types and
    sizes. The header bytes are returned as kept, not decoded (``Skeleton.header``)."""
    value = codec.unpack(raw, what="skeleton", max_bytes=limits.max_header_bytes + _OVERHEAD)
    d = codec.exact_map("skeleton", value, _FIELDS)
    version = d["skeleton"]
    if version != SKELETON_VERSION or isinstance(version, bool):
        raise Malformed(f"unsupported skeleton version {version!r:.20}")
    header, digest, length = d["header"], d["body_sha256"], d["body_length"]
    key_id, signature = d["signer_key_id"], d["signature"]
    if not isinstance(header, bytes) or not header:
        raise Malformed("skeleton header must be non-empty bytes")
    if len(header) > limits.max_header_bytes:
        raise LimitExceeded(f"skeleton header is {len(header)} bytes, "
                            f"limit {limits.max_header_bytes}")
    if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
        raise Malformed(f"skeleton body_sha256 must be {DIGEST_BYTES} bytes")
    if (not isinstance(length, int) or isinstance(length, bool)
            or not 0 <= length <= limits.max_envelope_bytes):
        raise Malformed("skeleton body_length must be a byte count within the envelope limit")
    if not isinstance(key_id, bytes) or len(key_id) != KEY_ID_BYTES:
        raise Malformed(f"skeleton signer_key_id must be {KEY_ID_BYTES} bytes")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise Malformed(f"skeleton signature must be {SIGNATURE_BYTES} bytes")
    return Skeleton(header_bytes=header, body_sha256=digest, body_length=length,
                    signer_key_id=key_id, signature=signature)
