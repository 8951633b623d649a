"""Challenge-response login: what an officer signs to prove they hold their signing key.

The message names the node, so a signature made for one node's challenge is useless at
another; the challenge is random and single-use, so it cannot be replayed.
"""

from __future__ import annotations

LOGIN_DOMAIN = b"liaison-net/login/v1\x00"
CHALLENGE_BYTES = 32


def login_message(node_id: str, challenge: bytes) -> bytes:
    return LOGIN_DOMAIN + node_id.encode() + b"\x00" + challenge
