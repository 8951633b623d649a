"""The desk's door on its own (liaison_net/desk/security.py): the login link's rules,
without a network; tests/integration/test_desk_security.py checks every request path."""

from __future__ import annotations

import pytest

from liaison_net.desk.security import LOGIN_TTL_S, DeskDoor
from liaison_net.errors import Unauthorized


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_login_token_is_good_once() -> None:
    door = DeskDoor(port=8080)
    token = door.login_token
    door.exchange(token)
    with pytest.raises(Unauthorized):
        door.exchange(token)


def test_an_unused_login_link_expires() -> None:
    clock = Clock()
    door = DeskDoor(port=8080, clock=clock)
    token = door.login_token
    clock.now += LOGIN_TTL_S + 1
    with pytest.raises(Unauthorized):
        door.exchange(token)
    assert door.login_token is None


def test_within_its_time_the_link_logs_in() -> None:
    clock = Clock()
    door = DeskDoor(port=8080, clock=clock)
    clock.now += LOGIN_TTL_S - 1
    door.exchange(door.login_token)


@pytest.mark.parametrize("given", [None, "", "x", "A" * 43])
def test_nothing_but_the_token_logs_in(given: str | None) -> None:
    door = DeskDoor(port=8080)
    with pytest.raises(Unauthorized):
        door.exchange(given)
    assert door.login_token is not None  # a wrong guess does not spend the real link


def test_every_secret_is_fresh_and_long() -> None:
    one, two = DeskDoor(port=1), DeskDoor(port=1)
    for a, b in ((one.login_token, two.login_token), (one.session, two.session),
                 (one.csrf, two.csrf)):
        assert a and b and a != b and len(a) >= 43
    assert len({one.login_token, one.session, one.csrf}) == 3
    assert one.cookie_name == "liaison_desk_1"
    assert one.hosts == {"127.0.0.1:1", "localhost:1"}


def test_the_session_ends_after_its_time() -> None:
    from aiohttp.test_utils import make_mocked_request

    from liaison_net.desk.security import SESSION_TTL_S

    clock = Clock()
    door = DeskDoor(port=8080, clock=clock)
    door.exchange(door.login_token)
    request = make_mocked_request("GET", "/api/inbox", headers={
        "Host": "127.0.0.1:8080", "Cookie": f"{door.cookie_name}={door.session}"})
    clock.now += SESSION_TTL_S - 1
    door.check(request)
    clock.now += 2
    with pytest.raises(Unauthorized, match="ended"):
        door.check(request)
