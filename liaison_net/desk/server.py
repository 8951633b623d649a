"""`liaison desk`: the officer's local web app, served by the officer's own process.

``serve`` binds 127.0.0.1 (port 0: one the system picks), builds the door for that port
(``security.DeskDoor``), prints the one-time login link and opens it when a graphical
browser is there, and runs two tasks in one TaskGroup until Ctrl-C: the web server and the
live feed, which follows the home node's inbox stream and tells every open page
(websocket ``/ws``) that something arrived, so the inbox and an open timeline refresh.

Every answer goes through ``door_middleware``: the door's checks first, then the handler;
a typed error becomes JSON with its stable code; an error of the node or the network is a
502 (the desk is a gateway to it) and anything unexpected a 502 ``desk_fault``, logged by
type only: never a 500, never a traceback to the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import webbrowser
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from liaison_net import errors
from liaison_net.desk import api
from liaison_net.desk.api import DOOR, OFFICER, answer
from liaison_net.desk.officer import DeskOfficer
from liaison_net.desk.security import DeskDoor, secure_headers

log = structlog.get_logger("liaison.desk")

HOST = "127.0.0.1"
MAX_PAGES = 16  # open websockets (tabs) at once
SEND_TIMEOUT_S = 5.0
FOLLOW_PAUSE_S = 5.0  # after the inbox stream failed in a way it does not retry itself
_STATIC = {"desk.js": "text/javascript", "desk.css": "text/css",
           "index.html": "text/html"}
_LOGGED_OUT = (b"<!doctype html><html lang=en><meta charset=utf-8>"
               b"<title>liaison desk: log in</title><link rel=stylesheet href=/static/desk.css>"
               b"<main><h1>Not logged in</h1><p>Open the link that <code>liaison desk</code> "
               b"printed in your terminal. Each link works once; run <code>liaison desk</code> "
               b"again for a new one.</p></main>")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hub:
    """The open pages' websockets, each told of new inbox entries."""

    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()

    async def broadcast(self, event: dict[str, Any]) -> None:
        for ws in list(self.sockets):
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await ws.send_json(event)
            except (ConnectionError, RuntimeError, TimeoutError):
                self.sockets.discard(ws)


HUB = web.AppKey("hub", Hub)
STATIC = web.AppKey("static", dict[str, bytes])


def _static_files() -> dict[str, bytes]:
    folder = resources.files("liaison_net.desk").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in _STATIC}


@web.middleware
async def door_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    door = request.app[DOOR]
    response: web.StreamResponse
    try:
        door.check(request)
        response = await handler(request)
    except errors.Unauthorized as exc:
        if request.path in ("/", "/login") and request.method == "GET":  # a person reads it
            response = web.Response(body=_LOGGED_OUT, status=401, content_type="text/html")
        else:
            response = _error(exc)
    except errors.LiaisonError as exc:
        response = _error(exc)
    except web.HTTPException as exc:  # aiohttp's own refusals: 404, 405, 413
        response = answer({"error": f"http_{exc.status}", "detail": exc.reason},
                          status=exc.status)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        log.error("desk.fault", path=request.path, error=type(exc).__name__)
        response = answer({"error": "desk_fault",
                           "detail": f"the desk failed ({type(exc).__name__}); see its log"},
                          status=502)
    secure_headers(door, response)
    return response


def _error(exc: errors.LiaisonError) -> web.Response:
    status = exc.http_status if exc.http_status < 500 else 502
    return answer({"error": exc.code, "detail": exc.detail}, status=status)


async def index(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATIC]["index.html"], content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC or name == "index.html":
        raise errors.NotFound(f"no such file: {name[:40]}")
    return web.Response(body=request.app[STATIC][name], content_type=_STATIC[name])


async def login(request: web.Request) -> web.Response:
    """Spend the printed token for the session cookie, and leave the URL at once."""
    door = request.app[DOOR]
    door.exchange(request.query.get("token"))
    response = web.HTTPSeeOther("/")
    door.set_cookie(response)
    return response


async def live(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[HUB]
    if len(hub.sockets) >= MAX_PAGES:
        raise errors.RateLimited(f"at most {MAX_PAGES} desk pages may be open at once")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await ws.prepare(request)
    hub.sockets.add(ws)
    try:
        async for _ in ws:
            pass  # the page says nothing; it listens
    finally:
        hub.sockets.discard(ws)
    return ws


def build_app(officer: DeskOfficer, door: DeskDoor) -> web.Application:
    app = web.Application(middlewares=[door_middleware], client_max_size=api.MAX_BODY_BYTES)
    app[OFFICER] = officer
    app[DOOR] = door
    app[HUB] = Hub()
    app[STATIC] = _static_files()
    app.router.add_get("/", index)
    app.router.add_get("/login", login)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/ws", live)
    api.add_routes(app)
    return app


async def follow(officer: DeskOfficer, hub: Hub) -> None:
    """Tell the open pages of each new inbox entry, for as long as the desk runs."""
    while True:
        try:
            entries_now = await officer.node.inbox_all()
            after = max((e.seq for e in entries_now), default=0)
            async with contextlib.aclosing(officer.node.follow(
                    after, on_retry=lambda exc, delay: officer.warnings.append(
                        f"live updates: {exc.detail}; retrying in {delay:.0f} s"))) as entries:
                async for entry in entries:
                    await hub.broadcast({"type": "inbox", "id": entry.id, "kind": entry.kind,
                                         "precedence": entry.precedence,
                                         "sender": entry.sender})
        except errors.LiaisonError as exc:
            officer.warnings.append(f"live updates paused: {exc.code}: {exc.detail}")
        await asyncio.sleep(FOLLOW_PAUSE_S)


def _can_open_browser() -> bool:
    """A graphical browser is plausible: never a text browser inside this terminal."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def serve(officer: DeskOfficer, *, port: int, open_browser: bool,
                say: Callable[[str], None]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise errors.ConfigError(f"cannot listen on {HOST}:{port}: "
                                 f"{exc.strerror or exc}") from None
    door = DeskDoor(port=sock.getsockname()[1])
    app = build_app(officer, door)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        url = door.login_url()
        say(f"desk of {officer.ks.officer} at http://{HOST}:{door.port}/")
        say(f"open this link (it works once): {url}")
        if open_browser and _can_open_browser():
            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(url)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(follow(officer, app[HUB]))
    finally:
        for ws in list(app[HUB].sockets):
            await ws.close()
        await runner.cleanup()
