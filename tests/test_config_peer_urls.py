"""A peer may list several URLs (the workers of its node, issue 17): ``url``, ``urls`` or
both, each https://host:port, no repeats, bounded; the lease and inbox poll settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liaison_net.config import MAX_PEER_URLS, parse
from liaison_net.errors import ConfigError

A, B = "https://10.0.0.1:7001", "https://10.0.0.2:7001"


def _config(peer: dict[str, Any], **delivery: float) -> dict[str, Any]:
    return {"node": {"id": "nl", "data_dir": "d", "cert_dir": "c"},
            "listen": {"federation": "127.0.0.1:7001", "client": "127.0.0.1:7002"},
            "peers": [{"id": "be", **peer}], "delivery": delivery}


@pytest.mark.parametrize(("peer", "urls"), [
    ({"url": A}, (A,)),
    ({"urls": [A, B + "/"]}, (A, B)),
    ({"url": A, "urls": [B]}, (A, B)),
])
def test_url_urls_or_both(peer: dict[str, Any], urls: tuple[str, ...],
                          tmp_path: Path) -> None:
    parsed = parse(_config(peer), tmp_path / "nl.toml").peers[0]
    assert (parsed.url, parsed.urls) == (urls[0], urls)


@pytest.mark.parametrize(("peer", "problem"), [
    ({}, "needs url"),
    ({"urls": []}, "needs url"),
    ({"urls": A}, "must be an array"),
    ({"urls": [A, "http://10.0.0.2:7001"]}, "https://host:port"),
    ({"urls": [A, 7001]}, "https://host:port"),
    ({"url": A, "urls": [A + "/"]}, "twice"),
    ({"urls": [f"https://10.0.0.{i}:7001" for i in range(MAX_PEER_URLS + 1)]}, "more than"),
    ({"url": A, "ulrs": [B]}, "unknown peers[0] key"),
])
def test_bad_peer_urls_are_refused_by_name(peer: dict[str, Any], problem: str,
                                           tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse(_config(peer), tmp_path / "nl.toml")


def test_lease_and_inbox_poll_settings(tmp_path: Path) -> None:
    delivery = parse(_config({"url": A}, lease_s=3, inbox_poll_s=0.2),
                     tmp_path / "nl.toml").delivery
    assert (delivery.lease_s, delivery.inbox_poll_s) == (3, 0.2)
    with pytest.raises(ConfigError, match="lease_s"):
        parse(_config({"url": A}, lease_s=0.1), tmp_path / "nl.toml")
