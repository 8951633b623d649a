"""Key rotation and revocation statements: signed facts about keys, checked by everyone.

A *rotation* announces a new key: it is signed by the old key (the holder still controls
it) and, separately, vouched for by the authority above (the home node issues a new card
for an officer; the CA issues a new signing certificate for a node). Peers then accept
both keys until ``grace_until``, so nothing in flight fails, and only the new one after.

A *revocation* withdraws a key from ``effective`` on: it is signed by the authority (the
home node for an officer key; for a node key, the node itself, with its current key) and,
once verified, makes every node and client refuse what the key signs. A node's own keys
change (rotation, replacement, revocation) only with co-signatures of the other national
nodes (``core/key_change.py``); a node key revocation reaches clients as such a statement,
and ``verify_revocation`` reads it too.

Statements travel as ``[body_bytes, signature]`` (verify exact bytes, then decode), and
each carries a ``serial`` that only ever grows per subject, so a replayed old statement is
recognised and refused with its own error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liaison_net.core import codec, crypto, key_change
from liaison_net.core.ids import check_node_id, check_officer_id
from liaison_net.errors import Conflict, Forbidden, Malformed, UnknownKey

ROTATION_DOMAIN = b"liaison-net/key-rotation/v1\x00"
REVOCATION_DOMAIN = b"liaison-net/key-revocation/v1\x00"
MAX_STATEMENT_BYTES = 4096
MAX_REASON_CHARS = 256


class Subject(enum.Enum):
    OFFICER = "officer"
    NODE = "node"


@dataclass(frozen=True)
class Rotation:
    subject: Subject
    principal: str  # officer id or node id
    old_key_id: bytes
    new_signing_public: bytes
    new_encryption_public: bytes | None  # officers rotate both keys; nodes only signing
    serial: int
    issued: int  # ms
    grace_until: int  # ms: the old key is accepted until then

    def to_wire(self) -> dict[str, Any]:
        return {"subject": self.subject.value, "principal": self.principal,
                "old_key_id": self.old_key_id, "new_signing_public": self.new_signing_public,
                "new_encryption_public": self.new_encryption_public, "serial": self.serial,
                "issued": self.issued, "grace_until": self.grace_until}


@dataclass(frozen=True)
class Revocation:
    subject: Subject
    principal: str
    key_id: bytes
    reason: str
    serial: int
    effective: int  # ms: from then on the key is refused everywhere
    authority: str  # who signed: the home node (`nl`) or, for a node key, the node itself

    def to_wire(self) -> dict[str, Any]:
        return {"subject": self.subject.value, "principal": self.principal,
                "key_id": self.key_id, "reason": self.reason, "serial": self.serial,
                "effective": self.effective, "authority": self.authority}


def _pack_signed(domain: bytes, body: dict[str, Any], key: crypto.SigningKeyPair) -> bytes:
    body_bytes = codec.pack(body)
    return codec.pack([body_bytes, crypto.sign(key, domain + body_bytes)])


def split_statement(raw: bytes) -> tuple[bytes, bytes]:
    value = codec.unpack(raw, what="key statement", max_bytes=MAX_STATEMENT_BYTES)
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], bytes)
            or not isinstance(value[1], bytes)):
        raise Malformed("key statement must be [body bytes, signature]")
    return value[0], value[1]


def sign_rotation(rotation: Rotation, old_key: crypto.SigningKeyPair) -> bytes:
    if old_key.key_id != rotation.old_key_id:
        raise Malformed("a rotation must be signed by the key it replaces")
    _check_rotation(rotation)
    return _pack_signed(ROTATION_DOMAIN, rotation.to_wire(), old_key)


def verify_rotation(raw: bytes, *, old_public: bytes, last_serial: int) -> Rotation:
    """Believe a rotation only if the old key signed it and it is newer than the last one.

    BadSignature for a bad signature, Conflict for a replayed or stale statement.
    """
    body, signature = split_statement(raw)
    crypto.verify(old_public, ROTATION_DOMAIN + body, signature)
    d = codec.exact_map("rotation", codec.unpack(body, what="rotation",
                                                 max_bytes=MAX_STATEMENT_BYTES),
                        {"subject", "principal", "old_key_id", "new_signing_public",
                         "new_encryption_public", "serial", "issued", "grace_until"})
    subject = _subject(d["subject"])
    rotation = Rotation(
        subject=subject,
        principal=_principal(subject, d["principal"]),
        old_key_id=codec.exact_bytes(d["old_key_id"], crypto.KEY_ID_BYTES, "old_key_id"),
        new_signing_public=codec.exact_bytes(d["new_signing_public"],
                                             crypto.PUBLIC_KEY_BYTES, "new_signing_public"),
        new_encryption_public=(None if d["new_encryption_public"] is None else codec.exact_bytes(
            d["new_encryption_public"], crypto.PUBLIC_KEY_BYTES, "new_encryption_public")),
        serial=codec.small_int(d["serial"], "serial"),
        issued=codec.small_int(d["issued"], "issued"),
        grace_until=codec.small_int(d["grace_until"], "grace_until"),
    )
    if rotation.old_key_id != crypto.signing_key_id(old_public):
        raise Malformed("rotation names another old key than the one that signed it")
    _check_rotation(rotation)
    if rotation.serial <= last_serial:
        raise Conflict(f"rotation serial {rotation.serial} is not newer than {last_serial}: "
                       "a replayed or stale statement")
    return rotation


def sign_revocation(revocation: Revocation, authority_key: crypto.SigningKeyPair) -> bytes:
    _check_revocation(revocation)
    body_bytes = codec.pack(revocation.to_wire())
    signature = crypto.sign(authority_key, REVOCATION_DOMAIN + body_bytes)
    return codec.pack([revocation.authority, body_bytes, signature])


def verify_revocation(raw: bytes, node_keys: Mapping[str, bytes]) -> Revocation:
    """Believe a revocation only if the node it names as signer signed it, and that node is
    the authority over the revoked key (an officer's home node, or the node itself).

    BadSignature if the signature fails, UnknownKey for an unknown signer, Forbidden when a
    node revokes a key it has no authority over.
    """
    value = codec.unpack(raw, what="revocation", max_bytes=MAX_STATEMENT_BYTES)
    if isinstance(value, list) and len(value) == 4:
        return _node_key_revocation(raw, node_keys)
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not isinstance(value[1], bytes) or not isinstance(value[2], bytes)):
        raise Malformed("revocation must be [signer node, body bytes, signature]")
    signer, body, signature = value
    public = node_keys.get(signer)
    if public is None:
        raise UnknownKey(f"revocation signed by unknown node {signer[:20]!r}")
    crypto.verify(public, REVOCATION_DOMAIN + body, signature)
    d = codec.exact_map("revocation", codec.unpack(body, what="revocation",
                                                   max_bytes=MAX_STATEMENT_BYTES),
                        {"subject", "principal", "key_id", "reason", "serial", "effective",
                         "authority"})
    subject = _subject(d["subject"])
    reason = d["reason"]
    if not isinstance(reason, str):
        raise Malformed("revocation reason must be text")
    revocation = Revocation(
        subject=subject,
        principal=_principal(subject, d["principal"]),
        key_id=codec.exact_bytes(d["key_id"], crypto.KEY_ID_BYTES, "key_id"),
        reason=reason,
        serial=codec.small_int(d["serial"], "serial"),
        effective=codec.small_int(d["effective"], "effective"),
        authority=check_node_id(d["authority"], what="revocation authority"),
    )
    if revocation.authority != signer:
        raise Malformed("revocation names another authority than its signer")
    _check_revocation(revocation)
    return revocation


def _node_key_revocation(raw: bytes, node_keys: Mapping[str, bytes]) -> Revocation:
    """A node key revoked by a key change (core/key_change.py): signed by the node's
    current key. Its co-signatures were counted by the node that stored it (the reader's
    home node, which refuses one without the threshold); here only the node's own
    signature is checked."""
    node = key_change.split(raw)[0]
    change = key_change.verify(raw, subject_key=node_keys.get(node), cosigner_keys={},
                               threshold=0, last_serial=None).change
    if change.kind is not key_change.Kind.REVOKE:
        raise Malformed("a key change that revokes nothing is not a revocation")
    return Revocation(Subject.NODE, change.node, change.old_key_id, change.reason,
                      change.serial, change.issued, change.node)


def authority_for(subject: Subject, principal: str) -> str:
    """Whose signature a revocation of this principal's key needs: its home node."""
    return principal.split("/")[0] if subject is Subject.OFFICER else principal


def _check_rotation(r: Rotation) -> None:
    _principal(r.subject, r.principal)
    if (r.subject is Subject.OFFICER) != (r.new_encryption_public is not None):
        raise Malformed("officers rotate both keys; nodes rotate only their signing key")
    # The new keys enter here: no weak one is announced or believed (``weak_key``).
    crypto.check_signing_public(r.new_signing_public,
                                f"rotation of {r.principal} new_signing_public")
    if r.new_encryption_public is not None:
        crypto.check_encryption_public(r.new_encryption_public,
                                       f"rotation of {r.principal} new_encryption_public")
    if crypto.signing_key_id(r.new_signing_public) == r.old_key_id:
        raise Malformed("the new key is the old key")
    if r.grace_until < r.issued:
        raise Malformed("grace_until must not be before issued")


def _check_revocation(r: Revocation) -> None:
    _principal(r.subject, r.principal)
    if r.authority != authority_for(r.subject, r.principal):
        raise Forbidden(f"node {r.authority} has no authority over the keys of {r.principal}")
    if not r.reason.strip() or len(r.reason) > MAX_REASON_CHARS:
        raise Malformed(f"revocation reason must be 1-{MAX_REASON_CHARS} characters")


def _subject(value: object) -> Subject:
    try:
        return Subject(value)
    except ValueError as exc:
        raise Malformed("subject must be officer or node") from exc


def _principal(subject: Subject, value: object) -> str:
    if subject is Subject.OFFICER:
        return check_officer_id(value)
    return check_node_id(value)


