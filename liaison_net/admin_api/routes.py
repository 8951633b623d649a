"""The administrator's door of a running node: HTTP over a unix socket beside its database.

`liaison admin enrol-officer` and `liaison admin revoke` ask the running node to do the
write (``services.admin_desk``), so the node stays the one writer of its store and
pushes the card or revocation to its peers at once. Who may ask is settled by the file
system: the socket is created 0600 (before it is bound, so there is no moment at which
it is open to others) in the node's data directory, so only the node's own user, the
one that can read the database anyway, can connect. There are no tokens to keep.

Answers are JSON; errors are ours, ``{"error": code, "detail": text}``, as on the
officer API (``http_common``).
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

from aiohttp import web

from liaison_net.admin_api.wire import OCTETS, parse_key_id, revoke_answer
from liaison_net.admin_api.wire import socket_path as socket_path  # the node asks routes
from liaison_net.core import admin_ops, rotation
from liaison_net.core.identity import MAX_CARD_BYTES
from liaison_net.errors import ConfigError, Malformed
from liaison_net.http_common import error_middleware, read_body, read_json
from liaison_net.services.admin_desk import AdminDesk

#: A unix socket path is at most 107 bytes on Linux (sun_path); refuse longer at start.
MAX_SOCKET_PATH = 107
MAX_REVOKE_BYTES = 4096


def bind(path: Path) -> socket.socket:
    """A listening-ready unix socket at ``path``, mode 0600 from its creation on."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(f"the admin socket path {path} is longer than {MAX_SOCKET_PATH} "
                          "bytes: choose a shorter [node] data_dir")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # left behind by a node that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # On Linux the socket file takes the mode of the unbound socket's inode.
        os.fchmod(sock.fileno(), 0o600)
        sock.bind(str(path))
        os.chmod(path, 0o600)  # and again, where the platform ignores the first
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot create the admin socket {path}: "
                          f"{exc.strerror or exc}") from None
    return sock


class AdminApi:
    def __init__(self, desk: AdminDesk) -> None:
        self.desk = desk

    def app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware], client_max_size=MAX_CARD_BYTES)
        app.router.add_post("/admin/v1/enrol", self._enrol)
        app.router.add_post("/admin/v1/revoke", self._revoke)
        # [admin] four_eyes: a proposal, then a second administrator's approval (signed).
        app.router.add_post("/admin/v1/ops/propose", self._propose)
        app.router.add_post("/admin/v1/ops/approve", self._approve)
        return app

    async def _propose(self, request: web.Request) -> web.Response:
        raw = await read_body(request, OCTETS, admin_ops.MAX_OP_BYTES)
        return web.json_response(await self.desk.propose(raw))

    async def _approve(self, request: web.Request) -> web.Response:
        raw = await read_body(request, OCTETS, admin_ops.MAX_OP_BYTES)
        return web.json_response(await self.desk.approve(raw))

    async def _enrol(self, request: web.Request) -> web.Response:
        raw = await read_body(request, OCTETS, MAX_CARD_BYTES)
        _card, raw_card = await self.desk.enrol(raw)
        return web.json_response({"card": base64.b64encode(raw_card).decode()})

    async def _revoke(self, request: web.Request) -> web.Response:
        data = await read_json(request, MAX_REVOKE_BYTES,
                               {"subject", "principal", "reason", "key_id"})
        subject, principal = data["subject"], data["principal"]
        reason, key_id_hex = data["reason"], data["key_id"]
        # Types only: the desk and core/rotation.py check the values (ids, authority,
        # the reason's length) as they do for the CLI's own path.
        if subject not in ("officer", "node") or not isinstance(principal, str) \
                or not isinstance(reason, str):
            raise Malformed("subject must be officer or node; principal and reason strings")
        key_id = parse_key_id(key_id_hex)
        done = await self.desk.revoke(rotation.Subject(subject), principal, reason, key_id)
        return web.json_response(revoke_answer(done.key_id, done.principal, done.effective,
                                               done.pushed_to))
