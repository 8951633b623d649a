"""Four-eyes administration (issue 19): an administrator's proposal of an enrolment,
revocation or node key rotation, and a second administrator's approval of it.

Each administrator holds an Ed25519 key of their own (``[admin.admins]`` names them). A
proposal is signed by its proposer and names the node, the kind and the exact arguments;
its id is a hash of those signed bytes, so an approval of the id approves exactly them.
The approval is signed by another administrator, with another key: the same person (name
or key) twice is refused. Both are domain-separated and verified before decoding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from liaison_net.core import codec, crypto
from liaison_net.errors import Malformed, PolicyRefused, UnknownKey

PROPOSAL_DOMAIN = b"liaison-net/admin-op/v1\x00"
APPROVAL_DOMAIN = b"liaison-net/admin-op-approval/v1\x00"
KINDS = frozenset({"enrol-officer", "revoke", "rotate-key"})
ADMIN_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
OP_ID_RE = re.compile(r"[0-9a-f]{24}")
MAX_OP_BYTES = 16 * 1024
MAX_ARGS_BYTES = 12 * 1024
_OP_FIELDS = {"kind", "node", "args", "admin", "at"}
_APPROVAL_FIELDS = {"op", "admin", "at"}


@dataclass(frozen=True)
class AdminOp:
    kind: str  # one of KINDS
    node: str  # the node it is for
    args: bytes  # what the operation takes (an enrolment request, the revocation's JSON)
    admin: str  # the proposer
    at: int  # ms

    def to_wire(self) -> dict[str, object]:
        return {"kind": self.kind, "node": self.node, "args": self.args, "admin": self.admin,
                "at": self.at}


@dataclass(frozen=True)
class OpApproval:
    op: str  # the proposal's id
    admin: str  # the second administrator
    at: int


def op_id(raw: bytes) -> str:
    """The id of a signed proposal: what an approval names."""
    return hashlib.sha256(b"liaison-net/admin-op-id/v1\x00" + raw).hexdigest()[:24]


def sign_op(op: AdminOp, key: crypto.SigningKeyPair) -> bytes:
    _check_op(op)
    body = codec.pack(op.to_wire())
    return codec.pack([op.admin, body, crypto.sign(key, PROPOSAL_DOMAIN + body)])


def sign_approval(approval: OpApproval, key: crypto.SigningKeyPair) -> bytes:
    _check_name(approval.admin)
    body = codec.pack({"op": approval.op, "admin": approval.admin, "at": approval.at})
    return codec.pack([approval.admin, body, crypto.sign(key, APPROVAL_DOMAIN + body)])


def verify_op(raw: bytes, admins: Mapping[str, bytes]) -> AdminOp:
    body = _verified(raw, admins, PROPOSAL_DOMAIN, "proposal")
    d = codec.exact_map("proposal", codec.unpack(body, what="proposal",
                                                 max_bytes=MAX_OP_BYTES), _OP_FIELDS)
    if (not isinstance(d["kind"], str) or not isinstance(d["node"], str)
            or not isinstance(d["args"], bytes) or not isinstance(d["admin"], str)):
        raise Malformed("proposal fields have the wrong types")
    op = AdminOp(d["kind"], d["node"], d["args"], d["admin"], _ms(d["at"]))
    _check_op(op)
    if op.admin != _outer(raw)[0]:
        raise Malformed("proposal names another administrator than its signer")
    return op


def verify_approval(raw: bytes, admins: Mapping[str, bytes]) -> OpApproval:
    body = _verified(raw, admins, APPROVAL_DOMAIN, "approval")
    d = codec.exact_map("approval", codec.unpack(body, what="approval",
                                                 max_bytes=MAX_OP_BYTES), _APPROVAL_FIELDS)
    if not isinstance(d["op"], str) or not OP_ID_RE.fullmatch(d["op"]) \
            or not isinstance(d["admin"], str):
        raise Malformed("approval must name an operation id and an administrator")
    approval = OpApproval(d["op"], d["admin"], _ms(d["at"]))
    if approval.admin != _outer(raw)[0]:
        raise Malformed("approval names another administrator than its signer")
    return approval


def check_second(op: AdminOp, approval: OpApproval, admins: Mapping[str, bytes]) -> None:
    """Two people: another name, and another key (one key under two names is refused)."""
    if approval.admin == op.admin or crypto.constant_time_equal(
            admins.get(approval.admin, b"a"), admins.get(op.admin, b"b")):
        raise PolicyRefused(f"administrator {approval.admin} proposed this operation: a "
                            "second administrator must approve it",
                            code="policy.four_eyes_same_admin")


def _verified(raw: bytes, admins: Mapping[str, bytes], domain: bytes, what: str) -> bytes:
    name, body, signature = _outer(raw)
    public = admins.get(name)
    if public is None:
        raise UnknownKey(f"{name} is not an administrator of this node ([admin.admins])")
    crypto.verify(public, domain + body, signature)
    return body


def _outer(raw: bytes) -> tuple[str, bytes, bytes]:
    value = codec.unpack(raw, what="admin statement", max_bytes=MAX_OP_BYTES)
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not isinstance(value[1], bytes) or not isinstance(value[2], bytes)):
        raise Malformed("an admin statement is [administrator, body bytes, signature]")
    return _check_name(value[0]), value[1], value[2]


def _check_name(name: str) -> str:
    if not ADMIN_NAME_RE.fullmatch(name):
        raise Malformed(f"administrator names match {ADMIN_NAME_RE.pattern}")
    return name


def _check_op(op: AdminOp) -> None:
    _check_name(op.admin)
    if op.kind not in KINDS:
        raise Malformed(f"operation kind must be one of {', '.join(sorted(KINDS))}")
    if len(op.args) > MAX_ARGS_BYTES:
        raise Malformed(f"operation arguments exceed {MAX_ARGS_BYTES} bytes")


def _ms(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Malformed("time must be milliseconds")
    return value
