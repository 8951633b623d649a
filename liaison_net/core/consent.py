"""The owner's consent to one forward: signed by an officer of the owning service, naming
the original envelope, who may forward it, and to whom (one officer, or one country).

A forward is an envelope of kind ``message`` whose ``ref`` names the original and which
carries the original's signed skeleton and its tag (or a tighter one). Every layer decides
it as FORWARD under that tag (``core/tagflow.py``); a consent in its header makes the
decision ``consent=True`` for exactly the recipients it covers, and for no one else: a
consent for one officer does not authorise another. A node records a consent as used when
it accepts the forward that relied on it: one consent, one forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from liaison_net.core import codec, crypto
from liaison_net.core.ids import check_envelope_id, check_node_id, check_officer_id, node_of
from liaison_net.errors import Malformed, UnknownKey

CONSENT_DOMAIN = b"liaison-net/consent/v1\x00"
MAX_CONSENT_BYTES = 4096
_FIELDS = {"original", "forwarder", "target", "owner", "issued", "expires"}


@dataclass(frozen=True)
class Consent:
    original: bytes  # the envelope that may be forwarded
    forwarder: str  # the officer who may forward it
    target: str  # an officer id (`lu/cschmit`) or a node id for a whole country (`lu`)
    owner: str  # the granting officer, of the tag owner's node
    issued: int  # ms
    expires: int  # ms

    def covers(self, recipient: str) -> bool:
        return self.target == recipient or self.target == node_of(recipient)

    def to_wire(self) -> dict[str, object]:
        return {"original": self.original, "forwarder": self.forwarder, "target": self.target,
                "owner": self.owner, "issued": self.issued, "expires": self.expires}


#: The media type of the attachment that carries a signed consent in the owner's reply
#: (cli/forwarding.py and desk/forwarding.py read it there).
CONSENT_MEDIA_TYPE = "application/x-liaison-consent"


def sign_consent(consent: Consent, owner_key: crypto.SigningKeyPair) -> bytes:
    _check(consent)
    body = codec.pack(consent.to_wire())
    return codec.pack([consent.owner, body, crypto.sign(owner_key, CONSENT_DOMAIN + body)])


def verify_consent(raw: bytes, owner_key: Callable[[str], bytes | None]) -> Consent:
    """The consent if the officer it names as owner signed it (key from the directory)."""
    value = codec.unpack(raw, what="consent", max_bytes=MAX_CONSENT_BYTES)
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not isinstance(value[1], bytes) or not isinstance(value[2], bytes)):
        raise Malformed("consent must be [owner, body bytes, signature]")
    owner, body, signature = value
    public = owner_key(check_officer_id(owner, what="consent owner"))
    if public is None:
        raise UnknownKey(f"consent owner {owner} is not in the directory")
    crypto.verify(public, CONSENT_DOMAIN + body, signature)
    d = codec.exact_map("consent", codec.unpack(body, what="consent",
                                                max_bytes=MAX_CONSENT_BYTES), _FIELDS)
    for key in ("issued", "expires"):
        if not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] <= 0:
            raise Malformed(f"consent {key} must be milliseconds")
    consent = Consent(check_envelope_id(d["original"]),
                      check_officer_id(d["forwarder"], what="consent forwarder"),
                      _target(d["target"]), check_officer_id(d["owner"], what="consent owner"),
                      d["issued"], d["expires"])
    if consent.owner != owner:
        raise Malformed("consent names another owner than its signer")
    _check(consent)
    return consent


def _target(value: object) -> str:
    if isinstance(value, str) and "/" in value:
        return check_officer_id(value, what="consent target")
    return check_node_id(value, what="consent target")


def _check(c: Consent) -> None:
    if c.expires <= c.issued:
        raise Malformed("consent validity is empty")
    if c.forwarder == c.target:
        raise Malformed("a consent names someone other than the forwarder as target")


def claimed_owner(raw: bytes) -> str:
    """The owner a consent claims, read before verifying, only to look up their key."""
    value = codec.unpack(raw, what="consent", max_bytes=MAX_CONSENT_BYTES)
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str):
        raise Malformed("consent must be [owner, body bytes, signature]")
    return check_officer_id(value[0], what="consent owner")
