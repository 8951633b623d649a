"""Seal an envelope on the sender's machine; verify it anywhere; open it only as a recipient.

seal:   random content key -> XChaCha20-Poly1305 over the plaintext with the canonical
        header as associated data -> the content key wrapped for each recipient's X25519
        key (sealed box) -> Ed25519 signature over header and the SHA-256 of the body
        (wraps + ciphertext).
verify: split the frame -> look up the signer by the key id in the frame -> check the
        signature over the exact bytes -> only then decode header and body -> check the
        header names that same key and signer, and (when asked) the clock rules.
open:   verify first, then unwrap the recipient's content key and decrypt.

Nodes call ``verify`` only: they hold no key that opens content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from liaison_net.core import codec, crypto
from liaison_net.core.envelope import (
    Body,
    Envelope,
    Header,
    Kind,
    Precedence,
    Recipient,
    UnverifiedFrame,
    Urgency,
    check_fresh,
    check_header_shape,
    decode_body,
    decode_header,
    read_frame,
    signed_message,
)
from liaison_net.core.frozen import build
from liaison_net.core.ids import check_officer_id, new_envelope_id
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.core.ownership import OwnershipTag
from liaison_net.core.signals import SignalAnnex
from liaison_net.errors import CannotOpen, Forbidden, LimitExceeded, Malformed, UnknownKey


@dataclass(frozen=True)
class RecipientKey:
    """A recipient as the sender sees it in the directory: officer id and X25519 public key."""

    officer: str
    public_key: bytes


@dataclass(frozen=True)
class SignerKey:
    """What a key lookup returns: who the key belongs to and its Ed25519 public half."""

    principal: str  # officer id (`nl/jdevries`) or node id (`nl`)
    public_key: bytes


#: Maps a signing key id to the key, or None when unknown, revoked or out of grace.
KeyLookup = Callable[[bytes], SignerKey | None]


def seal(
    *,
    sender: str,
    sender_key: crypto.SigningKeyPair,
    recipients: Sequence[RecipientKey],
    tag: OwnershipTag,
    plaintext: bytes,
    now: int,
    expires: int,
    kind: Kind = Kind.MESSAGE,
    precedence: Precedence = Precedence.ROUTINE,
    ref: bytes | None = None,
    signal: SignalAnnex | None = None,
    urgency: Urgency | None = None,
    consent: bytes | None = None,
    original: bytes | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Envelope:
    """Build, encrypt and sign a new envelope at time ``now`` (ms)."""
    check_officer_id(sender, what="sender")
    if not isinstance(plaintext, bytes):
        raise Malformed("plaintext must be bytes")
    if len(plaintext) > limits.max_body_bytes:
        raise LimitExceeded(f"content is {len(plaintext)} bytes, limit {limits.max_body_bytes}")
    tag.validate(limits)
    header = Header(
        id=new_envelope_id(now, crypto.random_bytes(10)),
        kind=kind,
        precedence=precedence,
        sender=sender,
        sender_key=sender_key.key_id,
        recipients=tuple(
            Recipient(check_officer_id(r.officer, what="recipient"),
                      crypto.encryption_key_id(r.public_key))
            for r in recipients
        ),
        created=now,
        expires=expires,
        tag=tag,
        ref=ref,
        signal=signal,
        urgency=urgency,
        consent=consent,
        original=original,
    )
    check_header_shape(header, limits)
    header_bytes = codec.pack(header.to_wire())
    if len(header_bytes) > limits.max_header_bytes:
        raise LimitExceeded(f"header is {len(header_bytes)} bytes, limit {limits.max_header_bytes}")
    content_key = crypto.new_content_key()
    nonce = crypto.new_nonce()
    body = Body(
        nonce=nonce,
        wraps=tuple(crypto.wrap_key(r.public_key, content_key) for r in recipients),
        ciphertext=crypto.aead_encrypt(content_key, nonce, plaintext, header_bytes),
    )
    body_bytes = codec.pack(body.to_wire())
    signature = crypto.sign(sender_key, signed_message(header_bytes, body_bytes))
    return Envelope(header, body, header_bytes, body_bytes, signature)


def verify(
    raw: bytes,
    lookup: KeyLookup,
    *,
    now: int | None,
    limits: Limits = DEFAULT_LIMITS,
) -> Envelope:
    """Return the envelope only if its signature verifies under a key ``lookup`` vouches for.

    ``now`` (ms) applies the clock rules (future created, expired); pass None only to
    re-read an envelope already accepted earlier (an inbox read days later).
    """
    frame = read_frame(raw, limits)
    return verify_frame(frame, lookup(frame.signer_key_id), now=now, limits=limits)


def verify_frame(
    frame: UnverifiedFrame,
    signer: SignerKey | None,
    *,
    now: int | None,
    limits: Limits = DEFAULT_LIMITS,
) -> Envelope:
    """``verify`` for callers that look the signer up themselves (asynchronously)."""
    if signer is None:
        raise UnknownKey(f"signing key {frame.signer_key_id.hex()} is unknown or no longer valid")
    crypto.verify(signer.public_key, frame.signed_message, frame.signature)
    # From here on the bytes are the signer's own: decode them.
    header = decode_header(frame.header_bytes, limits)
    if header.sender_key != frame.signer_key_id:
        raise Malformed("header sender_key differs from the key that signed the frame")
    if header.sender != signer.principal:
        raise Forbidden(f"key {frame.signer_key_id.hex()} does not belong to {header.sender}")
    body = decode_body(frame.body_bytes, len(header.recipients), limits)
    if now is not None:
        check_fresh(header, now, limits)
    return build(Envelope, header=header, body=body, header_bytes=frame.header_bytes,
                 body_bytes=frame.body_bytes, signature=frame.signature, raw=frame.raw)


def open_envelope(
    envelope: Envelope, officer: str, keys: Sequence[crypto.EncryptionKeyPair]
) -> bytes:
    """Decrypt a verified envelope as ``officer``, with whichever of ``keys`` it was sealed for.

    An officer keeps old keys after a rotation until everything sealed for them is read, so
    the keystore hands over all of them and the key id in the header picks the right one.
    """
    officers = [r.officer for r in envelope.header.recipients]
    if officer not in officers:
        raise CannotOpen(f"{officer} is not a recipient of {envelope.header.id_text}")
    index = officers.index(officer)
    recipient = envelope.header.recipients[index]
    key = next((k for k in keys if k.key_id == recipient.key_id), None)
    if key is None:
        raise CannotOpen(f"sealed for key {recipient.key_id.hex()}, which this keystore lacks")
    content_key = crypto.unwrap_key(key, envelope.body.wraps[index])
    return crypto.aead_decrypt(content_key, envelope.body.nonce, envelope.body.ciphertext,
                               envelope.header_bytes)
