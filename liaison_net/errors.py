"""The one exception tree of liaison_net.

Split by whose fault it is, as h11 does: ``Refused`` is the other side's fault (bad input,
bad signature, a tag that forbids the action) and maps to a 4xx answer; ``NodeFault`` is
ours (storage full, misconfiguration) and maps to a 5xx answer. Every class carries a stable
``code`` that clients and scripts may match on, and every instance a ``detail`` that names
the exact reason in words. Adapters translate foreign exceptions (msgpack, PyNaCl, aiohttp,
sqlite) into this tree once, at their boundary, so none leaks further.

The codes are listed in docs/protocol.md; a test checks that the list and this module agree.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LiaisonError(Exception):
    """Base of every error liaison_net raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            # A finer, still stable, code for one case of this class (e.g. a policy rule).
            self.code = code  # type: ignore[misc]  # instance override of the class default

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


# --- the other side's fault: 4xx ------------------------------------------------------------


class Refused(LiaisonError):
    """Input from a client, a peer or a file was refused; nothing was changed."""

    code = "refused"
    http_status = 400


class Malformed(Refused):
    """Bytes or fields that do not follow the protocol: wrong type, missing or extra field."""

    code = "malformed"
    http_status = 400


class WeakKey(Malformed):
    """A public key that must never be used: not a canonical encoding, not on the curve, or
    of small order (the identity, the all-zero X25519 key). The detail names which key."""

    code = "weak_key"
    http_status = 400


class LimitExceeded(Refused):
    """A size, count or time is over its configured limit."""

    code = "limit_exceeded"
    http_status = 413


class BadTimestamp(Refused):
    """A timestamp is outside the clock-skew window, or expiry is not after creation."""

    code = "bad_timestamp"
    http_status = 400


class Expired(Refused):
    """The envelope's expiry has passed; it can no longer be accepted or relayed."""

    code = "expired"
    http_status = 410


class Purged(Refused):
    """The envelope's ``retain_until`` passed and its content was purged: only the signed
    tag skeleton is kept, so it cannot be read, forwarded, answered or used as evidence."""

    code = "purged"
    http_status = 410


class BadSignature(Refused):
    """A signature does not verify over the exact bytes received."""

    code = "bad_signature"
    http_status = 400


class UnknownKey(Refused):
    """A key id names no key we know (or know to be valid for that signer)."""

    code = "unknown_key"
    http_status = 400


class Revoked(Refused):
    """The key that signed this was revoked; from the revocation's time on it is refused."""

    code = "revoked"
    http_status = 403


class CannotOpen(Refused):
    """The envelope cannot be opened with the keys at hand: not a recipient, or tampered."""

    code = "cannot_open"
    http_status = 400


class PolicyRefused(Refused):
    """The ownership tag forbids the action; the code names the rule (``policy.<rule>``)."""

    code = "policy"
    http_status = 403


class Unauthorized(Refused):
    """The caller did not prove who it is (login, token, peer certificate)."""

    code = "unauthorized"
    http_status = 401


class KeyRetired(Unauthorized):
    """A superseded key (replaced by a rotation) presented after its grace period ended:
    the keystore copy is older than the officer's current keys."""

    code = "key_retired"
    http_status = 401


class Forbidden(Refused):
    """The caller is known but may not do this (e.g. a peer speaking for another node)."""

    code = "forbidden"
    http_status = 403


class SignerNotAllowed(Forbidden):
    """The signature is good, but this signer may not say this: an officer key signing a
    node-only kind (a notice), or a notice speaking for another node (``core/signers.py``)."""

    code = "signer_not_allowed"
    http_status = 403


class CosignThreshold(Forbidden):
    """A node key change without co-signatures of the threshold of the other national
    nodes (each counted once; the node itself, a non-member, an unknown key or a bad
    signature count for nothing)."""

    code = "cosign_threshold"
    http_status = 403


class NotFound(Refused):
    """No such envelope, officer or route."""

    code = "not_found"
    http_status = 404


class Conflict(Refused):
    """The request contradicts what is already stored (e.g. a replayed rotation statement)."""

    code = "conflict"
    http_status = 409


class SerialReplayed(Conflict):
    """A node key change whose serial is not above the last one accepted for that node: a
    replayed or stale statement (core/key_change.py)."""

    code = "serial_replayed"
    http_status = 409


class SerialGap(Conflict):
    """A node key change whose serial skips one: the changes between are missing."""

    code = "serial_gap"
    http_status = 409


class UnsupportedMedia(Refused):
    """The request body has a content type the endpoint does not take."""

    code = "unsupported_media_type"
    http_status = 415


class RateLimited(Refused):
    """Too many requests from this caller in the current window."""

    code = "rate_limited"
    http_status = 429


class RequestTimeout(Refused):
    """The caller did not send its whole request within the time allowed (a slow body)."""

    code = "request_timeout"
    http_status = 408


# --- our fault: 5xx -------------------------------------------------------------------------


class NodeFault(LiaisonError):
    """Something on our side failed; the caller may retry later."""

    code = "node_fault"
    http_status = 500


class Unavailable(NodeFault):
    """The node cannot take work now (storage full or unwritable, shutting down)."""

    code = "unavailable"
    http_status = 503


class KeysChanged(Unavailable):
    """A card, a key or a revocation was written while envelopes were being decided, so the
    decision may rest on a key that no longer holds: nothing was stored. The node decides
    them again by itself; this reaches a caller only if keys kept changing."""

    code = "keys_changed"
    http_status = 503


class StorageFull(Unavailable):
    """The database cannot grow (disk full, or its ``[store] max_db_mb`` quota reached):
    nothing of the request was stored; the node resumes by itself when space returns."""

    code = "storage_full"
    http_status = 503


class LeaseLost(NodeFault):
    """This worker no longer holds the lease it acted under (another worker of the node
    took it over after it expired): the write that needed it was refused, nothing stored.
    Never sent to a caller; the worker stops that job and waits to take the lease again."""

    code = "lease_lost"
    http_status = 503


class BadFrame(NodeFault):
    """A frame between a node's own processes (workers/) broke a size, shape or time limit;
    the side that read it drops the worker and does the work itself."""

    code = "bad_frame"
    http_status = 500


class ConfigError(NodeFault):
    """The node or client configuration is invalid; the detail names the bad key."""

    code = "config_error"
    http_status = 500


class PortInUse(ConfigError):
    """A node cannot listen: another process holds the address its config names."""

    code = "port_in_use"
    http_status = 500


def all_error_classes() -> list[type[LiaisonError]]:
    """Every class of the tree, for docs and tests (depth-first, definition order)."""
    found: list[type[LiaisonError]] = []

    def walk(cls: type[LiaisonError]) -> None:
        found.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(LiaisonError)
    return found
