"""Per-peer limits: the sans-I/O token bucket and refusal window, the `[federation]` config
section, and the guard that applies them (in process, with a fake clock)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from liaison_net import config
from liaison_net.config import FederationLimits
from liaison_net.core.ratelimit import RefusalWindow, TokenBucket
from liaison_net.errors import ConfigError, RateLimited, RequestTimeout
from liaison_net.federation.guard import PeerGuard

# --- TokenBucket ----------------------------------------------------------------------------


def test_bucket_admits_the_burst_then_refuses_until_refilled() -> None:
    bucket = TokenBucket.full(rate=10, capacity=5, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.ready(0.05)  # half a token
    assert bucket.ready(0.1)
    assert bucket.take(1, 0.1) and not bucket.take(1, 0.1)
    assert bucket.wait_s(1, 0.1) == pytest.approx(0.1)


def test_bucket_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket.full(rate=100, capacity=3, now=0.0)
    assert bucket.take(3, 0.0)
    bucket.ready(1000.0)  # a long idle time
    assert bucket.tokens == 3
    assert bucket.take(3, 1000.0) and not bucket.take(1, 1000.0)


def test_a_refused_take_takes_nothing() -> None:
    bucket = TokenBucket.full(rate=1, capacity=10, now=0.0)
    assert bucket.take(8, 0.0)
    assert not bucket.take(3, 0.0)
    assert bucket.tokens == 2 and bucket.take(2, 0.0)


def test_a_cost_over_the_capacity_is_admitted_from_a_full_bucket_and_leaves_debt() -> None:
    bucket = TokenBucket.full(rate=10, capacity=4, now=0.0)
    assert bucket.take(24, 0.0)  # a batch larger than the burst is not refused forever
    assert bucket.tokens == -20
    assert not bucket.take(1, 2.0)  # the debt is paid back at the rate first
    assert bucket.take(1, 2.1)


def test_long_run_rate_holds_under_greedy_takes() -> None:
    rate, capacity = 50.0, 20.0
    bucket = TokenBucket.full(rate, capacity, 0.0)
    admitted, now = 0, 0.0
    while now < 10.0:
        for cost in (1, 7, 30):
            if bucket.take(cost, now):
                admitted += cost
        now += 0.001
    assert admitted <= capacity + rate * 10.0 + 30
    assert admitted >= rate * 10.0 * 0.9  # and it is not starved either


def test_a_clock_stepping_back_adds_nothing() -> None:
    bucket = TokenBucket.full(rate=10, capacity=2, now=100.0)
    assert bucket.take(2, 100.0)
    assert not bucket.take(1, 50.0)
    assert not bucket.ready(100.05)
    assert bucket.ready(100.2)


def test_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket.full(rate=0, capacity=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket.full(rate=1, capacity=0.5, now=0)
    with pytest.raises(ValueError):
        TokenBucket.full(rate=1, capacity=1, now=0).take(-1, 0)


# --- RefusalWindow --------------------------------------------------------------------------


def test_refusals_are_reported_once_per_window_with_their_count() -> None:
    window = RefusalWindow(window_s=60)
    assert window.refuse(0.0) == 1
    assert [window.refuse(t) for t in (1.0, 2.0, 59.9)] == [None, None, None]
    assert window.refuse(60.0) == 4  # three held back, and this one
    assert window.refuse(61.0) is None
    assert window.refuse(500.0) == 2


def test_a_flood_yields_a_bounded_number_of_reports() -> None:
    window = RefusalWindow(window_s=1.0)
    reports = [r for i in range(100_000) if (r := window.refuse(i * 0.0001)) is not None]
    assert len(reports) == 10  # 10 s of refusals, one per second
    assert sum(reports) == 100_000 - window.refused


# --- the [federation] section ---------------------------------------------------------------


def _parse(federation: dict[str, Any] | None) -> config.NodeConfig:
    data: dict[str, Any] = {
        "node": {"id": "be", "data_dir": "d", "cert_dir": "c"},
        "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"},
    }
    if federation is not None:
        data["federation"] = federation
    return config.parse(data, Path("/tmp/be.toml"))


def test_federation_limits_default_when_absent() -> None:
    assert _parse(None).federation_limits == FederationLimits()
    assert _parse({}).federation_limits == FederationLimits()


def test_federation_limits_are_read() -> None:
    limits = _parse({"envelopes_per_s": 40, "burst": 80, "in_flight_per_peer": 2,
                     "connections_per_peer": 3, "handshake_timeout_s": 1.5,
                     "header_timeout_s": 2, "body_timeout_s": 2.5,
                     "audit_window_s": 30}).federation_limits
    assert limits == FederationLimits(envelopes_per_s=40.0, burst=80, in_flight_per_peer=2,
                                      connections_per_peer=3, handshake_timeout_s=1.5,
                                      header_timeout_s=2.0, body_timeout_s=2.5,
                                      audit_window_s=30.0)
    assert isinstance(limits.burst, int)


@pytest.mark.parametrize("table, key", [
    ({"envelopes_per_s": 0}, "federation.envelopes_per_s"),
    ({"envelopes_per_s": "fast"}, "federation.envelopes_per_s"),
    ({"burst": 0}, "federation.burst"),
    ({"burst": 2.5}, "federation.burst"),
    ({"in_flight_per_peer": True}, "federation.in_flight_per_peer"),
    ({"connections_per_peer": 5000}, "federation.connections_per_peer"),
    ({"in_flight_per_peer": 8, "connections_per_peer": 4}, "federation.connections_per_peer"),
    ({"header_timeout_s": 0}, "federation.header_timeout_s"),
    ({"body_timeout_s": 7200}, "federation.body_timeout_s"),
    ({"handshake_timeout_s": -1}, "federation.handshake_timeout_s"),
    ({"audit_window_s": 0.5}, "federation.audit_window_s"),
    ({"flood_ok": 1}, "flood_ok"),
])
def test_bad_federation_limits_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _parse(table)


# --- the guard, in process ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _guard(**limits: Any) -> tuple[PeerGuard, Clock, list[tuple[str, dict[str, Any]]]]:
    clock = Clock()
    audited: list[tuple[str, dict[str, Any]]] = []

    async def audit(peer: str, detail: str) -> None:
        audited.append((peer, json.loads(detail)))

    return PeerGuard(FederationLimits(**limits), audit=audit, clock=clock), clock, audited


async def test_guard_refuses_over_the_rate_per_peer_and_audits_once_per_window() -> None:
    guard, clock, audited = _guard(envelopes_per_s=10, burst=20, audit_window_s=60)
    async with guard.admit("nl"):
        await guard.charge("nl", 20)  # the whole burst
    for _ in range(5):
        with pytest.raises(RateLimited):
            async with guard.admit("nl"):
                pass
    async with guard.admit("lu"):  # another peer has its own bucket
        await guard.charge("lu", 20)
    assert [(p, d["limit"], d["refused"]) for p, d in audited] == [("nl", "rate", 1)]
    clock.now += 0.5  # 5 tokens back
    async with guard.admit("nl"):
        with pytest.raises(RateLimited):
            await guard.charge("nl", 10)
    assert len(audited) == 1  # still inside the window
    clock.now += 60
    with pytest.raises(RateLimited):
        async with guard.admit("nl"):
            await guard.charge("nl", 10_000)
    assert [(d["limit"], d["refused"]) for _, d in audited] == [("rate", 1), ("rate", 6)]


async def test_guard_bounds_requests_in_flight_per_peer() -> None:
    guard, _, audited = _guard(in_flight_per_peer=2, connections_per_peer=2)
    async with guard.admit("nl"), guard.admit("nl"):
        with pytest.raises(RateLimited, match="in flight"):
            async with guard.admit("nl"):
                pass
        async with guard.admit("lu"):
            pass
    async with guard.admit("nl"), guard.admit("nl"):  # slots are given back
        pass
    assert [d["limit"] for _, d in audited] == ["in_flight"]


async def test_guard_bounds_connections_per_peer() -> None:
    guard, _, audited = _guard(in_flight_per_peer=1, connections_per_peer=2)
    assert guard.connection_opened("nl") and guard.connection_opened("nl")
    assert not guard.connection_opened("nl")
    assert guard.connection_opened("lu")
    guard.connection_closed("nl")
    assert guard.connection_opened("nl")
    await asyncio.sleep(0)  # the audit of a refused connection runs in the background
    await asyncio.sleep(0)
    assert [(p, d["limit"]) for p, d in audited] == [("nl", "connections")]


async def test_guard_times_out_a_slow_body_with_408() -> None:
    guard, _, audited = _guard(body_timeout_s=0.1)
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    with pytest.raises(RequestTimeout):
        await guard.body("nl", never)
    assert await guard.body("nl", asyncio.sleep(0, b"fast")) == b"fast"
    assert [d["limit"] for _, d in audited] == ["body_timeout"]
