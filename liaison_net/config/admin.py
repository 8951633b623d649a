"""[admin]: two-administrator approval of enrolment, revocation and node key rotation, and
the administrators' public keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liaison_net.config.fields import _num, _table
from liaison_net.core import crypto
from liaison_net.core.admin_ops import ADMIN_NAME_RE
from liaison_net.errors import ConfigError, LiaisonError


@dataclass(frozen=True)
class AdminConfig:
    """[admin]: with ``four_eyes``, enrolment, revocation and node key rotation need two
    administrators: one proposes (signed with their admin key), another approves (their
    own key). ``admins``: name -> Ed25519 public key (`liaison admin admin-key init`)."""

    four_eyes: bool = False
    admins: dict[str, bytes] = field(default_factory=dict)
    pending_hours: float = 24.0


def _admin(table: dict[str, Any]) -> AdminConfig:
    if unknown := set(table) - {"four_eyes", "admins", "pending_hours"}:
        raise ConfigError(f"unknown admin key(s): {', '.join(sorted(unknown))}")
    four_eyes = table.get("four_eyes", False)
    if not isinstance(four_eyes, bool):
        raise ConfigError("admin.four_eyes must be true or false")
    admins: dict[str, bytes] = {}
    for name, hex_key in _table(table, "admins", required=False).items():
        if not ADMIN_NAME_RE.fullmatch(name) or not isinstance(hex_key, str):
            raise ConfigError(f"admin.admins.{name}: a name ({ADMIN_NAME_RE.pattern}) = the "
                              "hex public key `liaison admin admin-key init` printed")
        try:
            admins[name] = crypto.check_signing_public(bytes.fromhex(hex_key),
                                                      f"admin key of {name}")
        except (ValueError, LiaisonError):
            raise ConfigError(f"admin.admins.{name} is not a valid Ed25519 public key") from None
    if len(set(admins.values())) != len(admins):
        raise ConfigError("admin.admins lists one key under two names")
    if four_eyes and len(admins) < 2:
        raise ConfigError("admin.four_eyes needs at least two administrators in "
                          "[admin.admins]")
    return AdminConfig(four_eyes, admins,
                       _num(table, "admin.pending_hours", 24.0, 0.01, 30 * 24))
