"""The desk's door, against a real `liaison desk` process and a real network: each check of
liaison_net/desk/security.py has a test here that fails when the check is removed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from liaison_net.desk.api import MAX_BODY_BYTES
from tests.integration.desk_net import DeskNet, RunningDesk, desk_network, running_desk
from tests.integration.network import audit_rows


@dataclass
class Door:
    desks: DeskNet
    desk: RunningDesk
    cookie: str  # "name=value", from the one login
    csrf: str


async def request(desk: RunningDesk, method: str, path: str, *,
                  headers: dict[str, str] | None = None, body: bytes | None = None,
                  ) -> tuple[int, dict[str, str], bytes]:
    """One request, headers exactly as given (no cookie jar, no redirects followed)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
            http.request(method, desk.base + path, headers=headers or {}, data=body,
                         allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"])


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    import asyncio

    with desk_network(tmp_path_factory.mktemp("desk-door")) as desks, \
            running_desk(desks.desk) as desk:
        token = desk.login_url.split("token=", 1)[1]

        async def login() -> tuple[str, str]:
            status, headers, _ = await request(desk, "GET", f"/login?token={token}")
            assert status == 303, status
            cookie = headers["Set-Cookie"].split(";", 1)[0]
            status, _, body = await request(desk, "GET", "/api/session",
                                            headers={"Cookie": cookie})
            assert status == 200, body
            return cookie, str(json.loads(body)["csrf"])

        cookie, csrf = asyncio.run(login())
        yield Door(desks, desk, cookie, csrf)


def change_headers(door: Door, **overrides: str) -> dict[str, str]:
    headers = {"Cookie": door.cookie, "Origin": door.desk.base, "X-CSRF-Token": door.csrf,
               "Content-Type": "application/json"}
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v}


CHECK_FORM = json.dumps({"to": ["be/jpeeters"], "subject": "s", "purpose": "p",
                         "handling": "H0", "tlp": "AMBER"}).encode()


async def test_the_login_token_is_spent_once_for_an_httponly_strict_cookie(door: Door) -> None:
    status, headers, body = await request(door.desk, "GET", door.desk.login_url.split(
        str(door.desk.port), 1)[1])
    assert status == 401 and b"Not logged in" in body  # spent by the fixture
    assert "Set-Cookie" not in headers
    status, headers, body = await request(door.desk, "GET", "/login?token=" + "A" * 43)
    assert status == 401 and b"Not logged in" in body and "Set-Cookie" not in headers
    # what the fixture's login set: HttpOnly, SameSite=Strict (checked on a fresh desk)
    with running_desk(door.desks.desk) as fresh:
        status, headers, _ = await request(fresh, "GET", fresh.login_url.split(
            str(fresh.port), 1)[1])
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie


async def test_without_the_session_cookie_nothing_is_answered(door: Door) -> None:
    status, _, body = await request(door.desk, "GET", "/api/inbox")
    assert status == 401 and error_code(body) == "unauthorized"
    status, _, body = await request(door.desk, "GET", "/api/inbox",
                                    headers={"Cookie": door.cookie + "x"})
    assert status == 401
    status, _, body = await request(door.desk, "GET", "/")
    assert status == 401 and b"Not logged in" in body  # a page, for a person


async def test_a_foreign_host_header_is_refused_even_with_the_cookie(door: Door) -> None:
    """DNS rebinding: evil.example resolved to 127.0.0.1 sends its own name as Host."""
    for host in (f"evil.example:{door.desk.port}", "127.0.0.1", f"127.0.0.1:{door.desk.port + 1}"):
        status, _, body = await request(door.desk, "GET", "/api/session",
                                        headers={"Cookie": door.cookie, "Host": host})
        assert status == 403 and error_code(body) == "forbidden", host
    status, _, _ = await request(door.desk, "GET", "/api/session", headers={
        "Cookie": door.cookie, "Host": f"localhost:{door.desk.port}"})
    assert status == 200


@pytest.mark.parametrize("case, overrides", [
    ("no origin", {"Origin": ""}),
    ("foreign origin", {"Origin": "http://evil.example"}),
    ("origin of another port", {"Origin": "http://127.0.0.1:1"}),
    ("no csrf token", {"X-CSRF-Token": ""}),
    ("wrong csrf token", {"X-CSRF-Token": "x" * 43}),
])
async def test_a_change_without_our_origin_and_csrf_token_is_refused(
        door: Door, case: str, overrides: dict[str, str]) -> None:
    status, _, body = await request(door.desk, "POST", "/api/check",
                                    headers=change_headers(door, **overrides), body=CHECK_FORM)
    assert status == 403 and error_code(body) == "forbidden", case
    # ...and the same request with both goes through
    status, _, body = await request(door.desk, "POST", "/api/check",
                                    headers=change_headers(door), body=CHECK_FORM)
    assert status == 200, body


async def test_the_websocket_needs_our_origin(door: Door) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(door.desk.base + "/ws", headers={
                "Cookie": door.cookie, "Origin": "http://evil.example"})
        assert refused.value.status == 403
        ws = await http.ws_connect(door.desk.base + "/ws", headers={
            "Cookie": door.cookie, "Origin": door.desk.base})
        await ws.close()


async def test_every_answer_has_a_strict_csp_and_none_allows_cors(door: Door) -> None:
    answers: list[dict[str, str]] = []
    for path, headers in (("/", {"Cookie": door.cookie}), ("/api/inbox", {}),
                          ("/static/desk.js", {"Cookie": door.cookie}),
                          ("/api/session", {"Cookie": door.cookie,
                                            "Origin": "http://evil.example"})):
        _, got, _ = await request(door.desk, "GET", path, headers=headers)
        answers.append(got)
    status, got, _ = await request(door.desk, "OPTIONS", "/api/send", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Cookie": door.cookie})
    assert status in (403, 405)
    answers.append(got)
    for headers in answers:
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert not [h for h in headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize("case, path, body, status, code", [
    ("not json", "/api/check", b"{", 400, "malformed"),
    ("not an object", "/api/check", b"[1]", 400, "malformed"),
    ("wrong type", "/api/check", json.dumps({"to": 5}).encode(), 400, "malformed"),
    ("too big", "/api/send", b"x" * (MAX_BODY_BYTES + 1), 413, "http_413"),
    ("bad id", "/api/envelopes/not-an-id/ack", b"{}", 400, "malformed"),
    ("no such route", "/api/nothing", b"{}", 404, "http_404"),
    ("tag refused", "/api/check", json.dumps({
        "to": ["be/jpeeters"], "subject": "s", "purpose": "p", "handling": "H3",
        "tlp": "AMBER"}).encode(), 400, "malformed"),
])
async def test_bad_input_is_a_typed_json_error_never_a_500(
        door: Door, case: str, path: str, body: bytes, status: int, code: str) -> None:
    got, _, answer = await request(door.desk, "POST", path, headers=change_headers(door),
                                   body=body)
    assert (got, error_code(answer)) == (status, code), (case, answer[:200])


@pytest.mark.parametrize("to, share_with", [
    ("de-nw/kmueller", ["be", "nl", "lu"]),  # DE-NW: not a node the tag allows
    ("be/jpeeters", ["nl"]),  # an enrolled colleague on a node the tag leaves out
])
async def test_the_policy_refuses_before_sending(door: Door, to: str,
                                                 share_with: list[str]) -> None:
    """Refused by the desk itself, naming the recipient: the node never sees it (it would
    refuse it too, and audit that)."""
    refusals = len([r for r in audit_rows(door.desks.net, "nl")
                    if r.event == "envelope.refused"])
    form: dict[str, Any] = {"to": [to], "subject": "s", "purpose": "p", "handling": "H0",
                            "tlp": "AMBER", "share_with": share_with}
    for path in ("/api/check", "/api/send"):
        status, _, body = await request(door.desk, "POST", path, headers=change_headers(door),
                                        body=json.dumps(form).encode())
        assert status == 403 and error_code(body).startswith("policy"), body
        assert f"not sending to {to}".encode() in body
    assert len([r for r in audit_rows(door.desks.net, "nl")
                if r.event == "envelope.refused"]) == refusals


async def test_what_was_sent_keeps_its_timeline_after_a_restart(door: Door) -> None:
    form = {"to": ["be/jpeeters"], "subject": "Kept", "text": "t", "purpose": "p",
            "handling": "H0", "tlp": "AMBER"}
    status, _, body = await request(door.desk, "POST", "/api/send",
                                    headers=change_headers(door), body=json.dumps(form).encode())
    assert status == 200, body
    sent = json.loads(body)["id"]
    with running_desk(door.desks.desk) as fresh:
        _, headers, _ = await request(fresh, "GET", fresh.login_url.split(str(fresh.port), 1)[1])
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        status, _, body = await request(fresh, "GET", "/api/sent", headers={"Cookie": cookie})
        assert status == 200 and sent in [s["id"] for s in json.loads(body)["sent"]]
        status, _, body = await request(fresh, "GET", f"/api/envelopes/{sent}/timeline",
                                        headers={"Cookie": cookie})
        assert status == 200 and json.loads(body)["recipients"][0]["officer"] == "be/jpeeters"


async def test_a_desk_read_is_audited_with_the_officer_s_reason(door: Door) -> None:
    """The desk reads through the officer API: the node audits each read (LED Art. 25
    consultation) with the reason typed in the desk, and refuses a reason it cannot log."""
    form = {"to": ["be/jpeeters", "nl/desk"], "subject": "Read me", "text": "t", "purpose": "p",
            "handling": "H0", "tlp": "AMBER"}
    status, _, body = await request(door.desk, "POST", "/api/send",
                                    headers=change_headers(door), body=json.dumps(form).encode())
    assert status == 200, body
    sent = json.loads(body)["id"]
    cookie = {"Cookie": door.cookie}
    status, _, body = await request(door.desk, "GET",
                                    f"/api/envelopes/{sent}?reason=case%2042%20%E2%80%93%20Lige",
                                    headers=cookie)
    assert status == 200 and json.loads(body)["content"]["subject"] == "Read me", body
    status, _, body = await request(door.desk, "GET", f"/api/envelopes/{sent}?reason=a%0Ab",
                                    headers=cookie)
    assert status == 400 and error_code(body) == "malformed", body
    reads = [r for r in audit_rows(door.desks.net, "nl") if r.event == "envelope.consulted"
             and r.detail.get("reason") is not None]
    assert [(r.detail["reason"], r.detail["purpose"]) for r in reads] == [
        ("case 42 \u2013 Lige", "p")]
