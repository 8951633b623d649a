"""What both ends of the admin socket agree on, without aiohttp's server.

The node serves the socket (``routes``); `liaison admin` asks it (``cli.admin_ask``). The
CLI needs only the socket's place, the body type and the shapes of a key id and of a
revocation's answer, so they live here, and an admin command does not import the server
stack to find a file name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liaison_net.errors import Malformed

SOCKET_NAME = "admin.sock"
OCTETS = "application/octet-stream"


def socket_path(data_dir: Path) -> Path:
    """Where the node listens and the CLI asks (resolved: a unix socket path is short)."""
    return data_dir.resolve() / SOCKET_NAME


def parse_key_id(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise Malformed("--key-id must be hex")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise Malformed("--key-id must be hex") from exc


def revoke_answer(key_id: bytes, principal: str, effective: int,
                  pushed_to: list[str]) -> dict[str, Any]:
    return {"key_id": key_id.hex(), "principal": principal, "effective": effective,
            "pushed_to": pushed_to}
