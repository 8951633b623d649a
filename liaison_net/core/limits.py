"""Every size, count and time the core enforces, in one place, with safe defaults.

A node's config may tighten or loosen these (within the hard ceilings below); the core
takes a ``Limits`` argument wherever it decodes untrusted bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from liaison_net.errors import ConfigError

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024  # ciphertext of one envelope
    max_recipients: int = 64
    max_text_chars: int = 256  # purpose, unit, community
    max_conditions_chars: int = 2048  # H3 free-text conditions
    max_share_with: int = 16
    max_clock_skew_ms: int = 5 * MINUTE_MS
    max_ttl_ms: int = 30 * DAY_MS  # expires - created
    max_retention_ms: int = 10 * 365 * DAY_MS  # retain_until - created

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"limits.{f.name} must be a positive integer")
            ceiling = _CEILINGS.get(f.name)
            if ceiling is not None and value > ceiling:
                raise ConfigError(f"limits.{f.name} must be at most {ceiling}")

    @property
    def max_envelope_bytes(self) -> int:
        """Whole wire envelope: header, body (ciphertext plus key wraps) and framing."""
        wraps = self.max_recipients * 128
        return self.max_header_bytes + self.max_body_bytes + wraps + 256


_CEILINGS = {
    "max_header_bytes": 256 * 1024,
    "max_body_bytes": 64 * 1024 * 1024,
    "max_recipients": 1024,
    "max_clock_skew_ms": HOUR_MS,
}

DEFAULT_LIMITS = Limits()
#: The widest limits any node's config may set: for reading again bytes a node has already
#: accepted under its own limits (which never exceed these), so the reading cannot refuse.
CEILING_LIMITS = Limits(**_CEILINGS)
