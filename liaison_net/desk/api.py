"""The desk's JSON routes: parse and bound what the page sent, call ``DeskOfficer``, answer.

Every field is type-checked and bounded here (a string's length, a list's count, a
number's range); anything else is a typed ``Malformed`` answer. The door
(``security.DeskDoor``) has already checked Host, session, Origin and CSRF by the time a
handler runs (``server.door_middleware``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from liaison_net.client import tagging
from liaison_net.client.answers import check_id
from liaison_net.core import art25
from liaison_net.core.envelope import Precedence
from liaison_net.core.ids import check_node_id
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.signals import Category, Severity
from liaison_net.desk import duties, forwarding
from liaison_net.desk.officer import Compose, DeskOfficer
from liaison_net.desk.security import DeskDoor
from liaison_net.errors import Malformed, UnsupportedMedia

OFFICER = web.AppKey("officer", DeskOfficer)
DOOR = web.AppKey("door", DeskDoor)
MAX_BODY_BYTES = DEFAULT_LIMITS.max_body_bytes + 64 * 1024  # a message text and its form
MAX_RECIPIENTS = 64
MAX_FIELD_CHARS = 2000
MAX_QUERY_CHARS = 100


# --- reading a form ------------------------------------------------------------------------


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMedia("the desk takes JSON (application/json)")
    raw = await request.read()  # bounded by the app's client_max_size
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed("the request body must be a JSON object")
    return value


def text(body: dict[str, Any], key: str, *, default: str | None = None,
         max_chars: int = MAX_FIELD_CHARS) -> str:
    value = body.get(key, default)
    if value is None:
        raise Malformed(f"{key} is required")
    if not isinstance(value, str):
        raise Malformed(f"{key} must be text")
    if len(value) > max_chars:
        raise Malformed(f"{key} is longer than {max_chars} characters")
    return value


def number(body: dict[str, Any], key: str, *, low: int, high: int, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not low <= value <= high:
        raise Malformed(f"{key} must be a whole number from {low} to {high}")
    return value


def texts(body: dict[str, Any], key: str, *, max_items: int,
          max_chars: int = 200) -> tuple[str, ...]:
    value = body.get(key, [])
    if isinstance(value, str):  # a text field: comma or line separated
        value = [v for v in value.replace("\n", ",").split(",")]
    if not isinstance(value, list) or len(value) > max_items:
        raise Malformed(f"{key} must be a list of at most {max_items} entries")
    out = []
    for item in value:
        if not isinstance(item, str) or len(item) > max_chars:
            raise Malformed(f"each {key} entry must be text of at most {max_chars} characters")
        if item.strip():
            out.append(item.strip())
    return tuple(dict.fromkeys(out))


def compose_form(body: dict[str, Any]) -> Compose:
    to = texts(body, "to", max_items=MAX_RECIPIENTS)
    if not to:
        raise Malformed("to: name at least one recipient")
    share = texts(body, "share_with", max_items=DEFAULT_LIMITS.max_share_with, max_chars=40)
    precedence = text(body, "precedence", default="routine", max_chars=20)
    Precedence.from_label(precedence)
    return Compose(
        to=to, subject=text(body, "subject", max_chars=200),
        text=text(body, "text", default="", max_chars=DEFAULT_LIMITS.max_body_bytes),
        handling=text(body, "handling", default="H0", max_chars=4),
        conditions=text(body, "conditions", default=""),
        tlp=text(body, "tlp", default="AMBER", max_chars=20),
        community=text(body, "community", default="", max_chars=200),
        share_with=(frozenset(check_node_id(n.lower(), what="share_with entry") for n in share)
                    or None),
        purpose=text(body, "purpose", max_chars=500),
        retain_days=number(body, "retain_days", low=1, high=3650, default=90),
        source=text(body, "source", default="X", max_chars=2),
        accuracy=number(body, "accuracy", low=1, high=4, default=4),
        permit=texts(body, "permit", max_items=4, max_chars=20),
        precedence=precedence,
        expires_hours=number(body, "expires_hours", low=1, high=30 * 24, default=72),
        unit=text(body, "unit", default="liaison", max_chars=100),
    )


def envelope_id(request: web.Request) -> str:
    return check_id(request.match_info["id"])


def answer(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status,
                             dumps=lambda v: json.dumps(v, ensure_ascii=True))


# --- the routes --------------------------------------------------------------------------


async def session(request: web.Request) -> web.Response:
    """Who is logged in, the CSRF token for changes, and the tag picker's choices."""
    officer = request.app[OFFICER]
    return answer({**officer.whoami(), "csrf": request.app[DOOR].csrf,
                   "choices": tagging.choices(),
                   "precedences": [p.label for p in Precedence],
                   "signal_categories": [c.value for c in Category],
                   "signal_severities": [s.label for s in Severity]})


async def inbox(request: web.Request) -> web.Response:
    show_all = request.query.get("all") == "1"
    return answer(await request.app[OFFICER].inbox(show_all=show_all))


async def read(request: web.Request) -> web.Response:
    """Open an envelope; ``?reason=`` is the officer's reason, audited by the node with the
    consultation (LED Art. 25; docs/ownership.md §8)."""
    reason = request.query.get("reason")
    return answer(await request.app[OFFICER].read(
        envelope_id(request), reason=art25.check_reason(reason) if reason else None))


async def ack(request: web.Request) -> web.Response:
    return answer(await request.app[OFFICER].ack(envelope_id(request)))


async def check(request: web.Request) -> web.Response:
    return answer(request.app[OFFICER].check(compose_form(await json_body(request))))


async def send(request: web.Request) -> web.Response:
    return answer(await request.app[OFFICER].send(compose_form(await json_body(request))))


async def sent(request: web.Request) -> web.Response:
    return answer({"sent": list(request.app[OFFICER].sent)})


async def timeline(request: web.Request) -> web.Response:
    return answer(await request.app[OFFICER].timeline(envelope_id(request)))


async def directory(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    if len(query) > MAX_QUERY_CHARS:
        raise Malformed(f"a search is at most {MAX_QUERY_CHARS} characters")
    return answer(await request.app[OFFICER].search(query))


async def warnings(request: web.Request) -> web.Response:
    return answer({"warnings": list(request.app[OFFICER].warnings)})


async def requests(request: web.Request) -> web.Response:
    return answer(await duties.requests(request.app[OFFICER]))


async def reply(request: web.Request) -> web.Response:
    body = await json_body(request)
    return answer(await duties.reply(
        request.app[OFFICER], envelope_id(request),
        text(body, "text", max_chars=DEFAULT_LIMITS.max_body_bytes),
        text(body, "late_reason", default="", max_chars=500)))


async def signals(request: web.Request) -> web.Response:
    return answer(await duties.signals(request.app[OFFICER]))


async def raise_signal(request: web.Request) -> web.Response:
    body = await json_body(request)
    share = texts(body, "share_with", max_items=DEFAULT_LIMITS.max_share_with, max_chars=40)
    category = text(body, "category", max_chars=60)
    if category not in {c.value for c in Category}:
        raise Malformed("category: not one of the signal categories")
    name = text(body, "subject_name", default="", max_chars=200)
    subject = None if not name.strip() else duties.Subject(
        name, text(body, "subject_birth_date", default="", max_chars=20),
        text(body, "subject_document", default="", max_chars=60),
        text(body, "justification", default="", max_chars=500))
    return answer(await duties.raise_signal(
        request.app[OFFICER], category=category, subject=subject,
        severity=text(body, "severity", max_chars=20),
        region=text(body, "region", max_chars=10),
        share_with=frozenset(check_node_id(n.lower(), what="share_with entry") for n in share),
        text=text(body, "text", max_chars=4000)))


async def forward(request: web.Request) -> web.Response:
    body = await json_body(request)
    return answer(await forwarding.forward(request.app[OFFICER], envelope_id(request),
                                           text(body, "to", max_chars=100).strip()))


async def ask_consent(request: web.Request) -> web.Response:
    body = await json_body(request)
    return answer(await forwarding.ask_consent(
        request.app[OFFICER], envelope_id(request), text(body, "to", max_chars=100).strip(),
        text(body, "reason", default="", max_chars=500)))


async def grant_consent(request: web.Request) -> web.Response:
    body = await json_body(request)
    return answer(await forwarding.grant_consent(
        request.app[OFFICER], envelope_id(request),
        text(body, "forwarder", max_chars=100).strip(),
        text(body, "target", max_chars=100).strip(),
        number(body, "days", low=1, high=90, default=7)))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/envelopes/{id}/forward", forward)
    app.router.add_post("/api/envelopes/{id}/consent-request", ask_consent)
    app.router.add_post("/api/envelopes/{id}/consent-grant", grant_consent)
    app.router.add_get("/api/requests", requests)
    app.router.add_post("/api/requests/{id}/reply", reply)
    app.router.add_get("/api/signals", signals)
    app.router.add_post("/api/signals", raise_signal)
    app.router.add_get("/api/session", session)
    app.router.add_get("/api/inbox", inbox)
    app.router.add_get("/api/envelopes/{id}", read)
    app.router.add_post("/api/envelopes/{id}/ack", ack)
    app.router.add_get("/api/envelopes/{id}/timeline", timeline)
    app.router.add_post("/api/check", check)
    app.router.add_post("/api/send", send)
    app.router.add_get("/api/sent", sent)
    app.router.add_get("/api/directory", directory)
    app.router.add_get("/api/warnings", warnings)
