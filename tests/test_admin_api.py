"""The node's admin socket answers typed refusals for bad requests and changes nothing;
a good one is done by the desk on the node's store (a real store, a real unix socket)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from liaison_net.admin_api.routes import AdminApi, bind
from liaison_net.cli.admin_ask import ask_node
from liaison_net.clock import SYSTEM_CLOCK
from liaison_net.core import crypto
from liaison_net.errors import ConfigError, LimitExceeded, Malformed, NotFound
from liaison_net.services.admin_desk import AdminDesk
from liaison_net.store.node_store import NodeStore


async def _serve(tmp_path: Path) -> tuple[NodeStore, web.AppRunner, Path]:
    store = NodeStore(tmp_path / "node.sqlite3", "nl")
    await store.open()
    key = crypto.signing_key_from_seed(bytes(32))
    desk = AdminDesk(node_id="nl", store=store, signing_key=lambda: key, peers=["be"],
                     card_validity_days=30, clock=SYSTEM_CLOCK)
    runner = web.AppRunner(AdminApi(desk).app())
    await runner.setup()
    path = tmp_path / "admin.sock"
    await web.SockSite(runner, bind(path)).start()
    return store, runner, path


def _revoke(**fields: object) -> bytes:
    body: dict[str, object] = {"subject": "officer", "principal": "nl/avisser",
                               "reason": "stolen", "key_id": None}
    body.update(fields)
    return json.dumps(body).encode()


async def test_bad_admin_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    store, runner, path = await _serve(tmp_path)
    try:
        before = len(await store.audit_entries())
        for body in (_revoke(subject="everyone"), _revoke(reason=7), _revoke(key_id="zz"),
                     _revoke(principal=["nl/avisser"]), b'{"subject": "officer"}', b"["):
            with pytest.raises(Malformed):
                await ask_node(path, "/admin/v1/revoke", body, "application/json")
        with pytest.raises(NotFound):  # a well-formed request for an unknown officer
            await ask_node(path, "/admin/v1/revoke", _revoke(), "application/json")
        with pytest.raises(Malformed):
            await ask_node(path, "/admin/v1/enrol", b"not a request", "application/octet-stream")
        assert len(await store.audit_entries()) == before
    finally:
        await runner.cleanup()
        await store.close()


async def test_nothing_listening_means_no_node(tmp_path: Path) -> None:
    assert await ask_node(tmp_path / "admin.sock", "/admin/v1/revoke", _revoke(),
                          "application/json") is None


def test_a_socket_path_too_long_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"choose a shorter \[node\] data_dir"):
        bind(tmp_path / ("d" * 120) / "admin.sock")


async def test_the_socket_refuses_a_body_too_large(tmp_path: Path) -> None:
    store, runner, path = await _serve(tmp_path)
    try:
        with pytest.raises(LimitExceeded):
            await ask_node(path, "/admin/v1/enrol", b"x" * 200_000, "application/octet-stream")
    finally:
        await runner.cleanup()
        await store.close()
