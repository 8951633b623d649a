"""The desk's door: who may talk to the officer's unlocked keys through a browser.

The desk listens on 127.0.0.1 only, but "only this machine" is not "only this officer":
any web page the officer visits can make the browser send requests to 127.0.0.1, and a
hostile DNS name can be re-pointed at 127.0.0.1 (DNS rebinding). So, as Jupyter does:

* **Login token.** ``liaison desk`` prints (and opens) ``/login?token=T``: T is 32 random
  bytes, compared in constant time, good for one exchange only and for 15 minutes at
  most (``LOGIN_TTL_S``). The exchange sets an
  ``HttpOnly; SameSite=Strict`` session cookie (another random value, per port) and
  redirects to ``/``, so the token leaves the address bar and the history at once. The
  session lasts while the desk runs, 12 hours at most (``SESSION_TTL_S``).
* **Host allowlist.** Every request must name ``127.0.0.1:PORT`` or ``localhost:PORT`` in
  its Host header: a rebound name carries its own name, and is refused before anything.
* **Origin and CSRF.** Every state change (any method but GET/HEAD, and the websocket)
  must come with an ``Origin`` of this desk and the ``X-CSRF-Token`` header holding the
  session's CSRF token, which only a page of this origin can read (``/api/session``). A
  form posted from elsewhere has neither; SameSite=Strict withholds the cookie besides.
* **CSP, no CORS.** Every answer carries a strict Content-Security-Policy (scripts and
  styles only from this origin, no inline script, no frames), ``nosniff``, no referrer,
  ``no-store``; no answer ever carries an ``Access-Control-Allow-*`` header.

The passphrase and the keys never cross this door: the browser sees what the officer
reads and sends forms. Each refusal is a typed JSON error (``errors.Forbidden`` or
``errors.Unauthorized``), never a 500.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from liaison_net import errors

TOKEN_BYTES = 32
LOGIN_TTL_S = 15 * 60  # an unused login link expires: it may sit in a terminal's scrollback
SESSION_TTL_S = 12 * 3600  # a working day; then `liaison desk` again, and a new link
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/login"
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Paths served without a session: the login exchange and what a logged-out page needs.
PUBLIC_PATHS = frozenset({LOGIN_PATH, "/static/desk.css"})


def _equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; nothing equals a missing or spent secret."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


@dataclass
class DeskDoor:
    """The secrets of one desk run on one port (known only after the socket is bound)."""

    port: int
    login_token: str | None = field(default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES))
    session: str = field(default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES))
    clock: Callable[[], float] = time.monotonic
    login_ttl_s: float = LOGIN_TTL_S
    session_ttl_s: float = SESSION_TTL_S
    issued: float = field(init=False)
    logged_in: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.issued = self.clock()

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)

    @property
    def cookie_name(self) -> str:
        # Cookies ignore ports: a second desk on this machine must not overwrite ours.
        return f"liaison_desk_{self.port}"

    def login_url(self) -> str:
        if self.login_token is None:
            raise errors.Conflict("the login link was already used")
        return f"http://127.0.0.1:{self.port}{LOGIN_PATH}?token={self.login_token}"

    # --- the checks, each on its own so a test can name the one it proves ---------------

    def check_host(self, request: web.Request) -> None:
        host = request.headers.get("Host", "")
        if host not in self.hosts:
            raise errors.Forbidden(
                "this desk answers only at 127.0.0.1 or localhost on its own port "
                "(Host header refused)")

    def exchange(self, token: str | None) -> None:
        """Spend the login token: good once, within its time, compared in constant time."""
        if self.login_token is not None and self.clock() - self.issued > self.login_ttl_s:
            self.login_token = None  # expired: nothing equals it any more
        if not _equal(token, self.login_token):
            raise errors.Unauthorized(
                "this login link is not valid (used, expired or mistyped): run `liaison "
                "desk` again for a new one")
        self.login_token = None
        self.logged_in = self.clock()

    def check_session(self, request: web.Request) -> None:
        if (self.logged_in is not None
                and self.clock() - self.logged_in > self.session_ttl_s):
            raise errors.Unauthorized(
                "the desk's session has ended (after 12 hours): run `liaison desk` again")
        if not _equal(request.cookies.get(self.cookie_name), self.session):
            raise errors.Unauthorized(
                "not logged in: open the link that `liaison desk` printed")

    def check_origin(self, request: web.Request) -> None:
        if request.headers.get("Origin") not in self.origins:
            raise errors.Forbidden("a change must come from the desk's own page (Origin "
                                   "refused)")

    def check_csrf(self, request: web.Request) -> None:
        if not _equal(request.headers.get(CSRF_HEADER), self.csrf):
            raise errors.Forbidden(f"a change must carry the desk's {CSRF_HEADER} header")

    def is_change(self, request: web.Request) -> bool:
        """A state change: any unsafe method, and the websocket (it opens a live feed)."""
        return (request.method not in SAFE_METHODS
                or request.headers.get("Upgrade", "").lower() == "websocket")

    def check(self, request: web.Request) -> None:
        """Every check the path and method call for, in order (login excepted)."""
        self.check_host(request)
        if request.path in PUBLIC_PATHS:
            return
        self.check_session(request)
        if self.is_change(request):
            self.check_origin(request)
            if request.method not in SAFE_METHODS:
                self.check_csrf(request)

    def set_cookie(self, response: web.StreamResponse) -> None:
        response.set_cookie(self.cookie_name, self.session, httponly=True, samesite="Strict",
                            path="/", max_age=int(self.session_ttl_s))


def content_security_policy(door: DeskDoor) -> str:
    sockets = " ".join(f"ws://{host}" for host in sorted(door.hosts))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self' {sockets}; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")


def secure_headers(door: DeskDoor, response: web.StreamResponse) -> None:
    """The headers every answer carries (a prepared websocket has sent its own)."""
    if response.prepared:
        return
    response.headers["Content-Security-Policy"] = content_security_policy(door)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    for name in [h for h in response.headers if h.lower().startswith("access-control-")]:
        del response.headers[name]
