"""The officer CLI keeps its session token and directory between commands (issue 16): warm,
`liaison send` is one request and `liaison read` one TLS session; a cache file someone else
planted, changed or bound elsewhere is ignored with a warning; logout and rotation make
the token worthless at the node.

Requests are counted by a TLS-terminating proxy between the real `liaison` process and a
real node: it holds the node's own officer-listener certificate (so the CLI's CA, host name
and pin checks all pass), records each request and the TCP connection it came on, and
forwards it to the node. Counts, never timings.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from liaison_net.client import keystore as ks
from liaison_net.client.local_cache import LocalCache
from liaison_net.federation.tls import officer_client_context, server_context
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, free_port, run_cli
from tests.integration.officers import PASSPHRASE, now_ms

LOGIN = ["POST /api/v1/login/challenge", "POST /api/v1/login"]
SUBMIT = "POST /api/v1/envelopes"
SEND = ("send", "--subject", "Vehicle sighting", "--text", "Blue van, NL plates",
        "--handling", "H0", "--tlp", "AMBER", "--purpose", "drug trafficking inquiry",
        "--json")


@dataclass
class Seen:
    request: str
    connection: tuple[str, int]  # the CLI's address: one per TCP (and TLS) connection
    token: str | None


@dataclass
class CountingProxy:
    """The node's officer API, as the CLI sees it, with every request written down."""

    net: Network
    nid: str
    port: int
    seen: list[Seen] = field(default_factory=list)

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro: object) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        future.result(timeout=60)

    async def _start(self) -> None:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=officer_client_context(self.net.ca_cert)))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=server_context(
            self.net.certs / self.nid, require_client_cert=False)).start()

    async def _forward(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(Seen(f"{request.method} {request.path}", tuple(peer or ("?", 0)),
                              auth[len("Bearer "):] if auth else None))
        headers = {k: v for k, v in request.headers.items()
                   if k in ("Authorization", "Content-Type", "Accept")}
        async with self._http.request(
                request.method, self.net.nodes[self.nid].client_url + request.path_qs,
                data=await request.read(), headers=headers,
                server_hostname=node_hostname(self.nid)) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                headers={"Content-Type": answer.headers.get(
                                    "Content-Type", "application/octet-stream")})

    def stop(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._http.close()

        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def take(self) -> tuple[list[str], int]:
        """The requests since the last take, and over how many connections."""
        seen, self.seen = self.seen, []
        return [s.request for s in seen], len({s.connection for s in seen})


@dataclass(frozen=True)
class Live:
    net: Network
    proxy: CountingProxy
    jan: Path  # nl/jdevries, through the proxy
    mia: Path  # nl/mbakker, through the proxy


def _enrol(net: Network, officer: str, url: str) -> Path:
    path = net.root / "officers" / f"{officer.replace('/', '-')}.keystore"
    path.parent.mkdir(exist_ok=True)
    _, request = ks.create(path, officer, officer.split("/")[1].title(), "liaison officer",
                           url, net.ca_cert.read_bytes(), PASSPHRASE)
    path.with_suffix(".request").write_bytes(request)
    run_cli("admin", "enrol-officer", str(path.with_suffix(".request")), "--config",
            str(net.nodes[officer.split("/")[0]].config))
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    net = Network.create(tmp_path_factory.mktemp("cli-cache"), node_ids=("nl",))
    proxy = CountingProxy(net, "nl", free_port())
    try:
        url = f"https://127.0.0.1:{proxy.port}"
        jan, mia = _enrol(net, "nl/jdevries", url), _enrol(net, "nl/mbakker", url)
        net.start("nl")
        proxy.start()
        yield Live(net, proxy, jan, mia)
    finally:
        with_proxy = getattr(proxy, "_thread", None)
        if with_proxy is not None:
            proxy.stop()
        net.stop_all()


def cli(keystore: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--keystore", str(keystore),
                   env={"LIAISON_PASSPHRASE": PASSPHRASE.decode()})


def send(live: Live, keystore: Path, to: str = "nl/mbakker") -> tuple[str, str]:
    """Send to ``to``; the envelope id and the command's stderr."""
    import json

    out = cli(keystore, *SEND, "--to", to)
    return json.loads(out.stdout)["id"], out.stderr


def cache_of(path: Path) -> LocalCache:
    return LocalCache(path, now_ms=now_ms)


def test_send_is_one_request_once_warm(live: Live) -> None:
    """Cold: login (2), directory, submit, on one connection; warm: the submit alone. The
    cache files are 0600 and hold no token in the clear."""
    for suffix in (".session", ".directory"):
        live.jan.with_name(live.jan.name + suffix).unlink(missing_ok=True)
    live.proxy.take()
    send(live, live.jan)
    assert live.proxy.take() == ([*LOGIN, "GET /api/v1/directory", SUBMIT], 1)
    send(live, live.jan)
    assert live.proxy.take() == ([SUBMIT], 1)
    token_file = live.jan.with_name(live.jan.name + ".session")
    for suffix in (".session", ".directory"):
        assert os.stat(live.jan.with_name(live.jan.name + suffix)).st_mode & 0o777 == 0o600
    token = cache_of(live.jan).load_token(ks.load(live.jan, PASSPHRASE))
    assert token is not None and token.token.encode() not in token_file.read_bytes()


def test_a_recipient_the_cached_directory_lacks_is_fetched_for(live: Live) -> None:
    """An officer enrolled after the directory was cached: the CLI asks the node for the
    directory again (and only that) instead of refusing the recipient."""
    send(live, live.jan)  # warm
    _enrol(live.net, "nl/newcomer", f"https://127.0.0.1:{live.proxy.port}")
    live.proxy.take()
    send(live, live.jan, to="nl/newcomer")
    assert live.proxy.take() == (["GET /api/v1/directory", SUBMIT], 1)


def test_read_is_one_tls_session(live: Live) -> None:
    """`read` fetches, verifies with the cached directory and sends its "delivered" and
    "opened" statements over one connection, without a login or a directory request."""
    first, _ = send(live, live.jan)
    second, _ = send(live, live.jan)
    cli(live.mia, "read", first)  # cold, perhaps: logs in, fetches the directory
    live.proxy.take()
    cli(live.mia, "read", second)
    assert live.proxy.take() == ([f"GET /api/v1/envelopes/{second}", SUBMIT, SUBMIT], 1)


def _mode_0644(path: Path) -> str:
    path.chmod(0o644)
    return "others may read or change it"


def _flip_a_byte(path: Path) -> str:
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))
    return "does not open for this keystore and node"


def _symlink(path: Path) -> str:
    target = path.with_name("elsewhere")
    path.rename(target)
    path.symlink_to(target)
    return "symbolic link"


def _another_officers(path: Path) -> str:
    mia_cache = path.parent / ("nl-mbakker.keystore" + path.name.split(".keystore")[1])
    path.write_bytes(mia_cache.read_bytes())
    return "does not open for this keystore and node"


def _owned_by_someone_else(path: Path) -> str:
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(path, 12345, 12345)
    return "owned by uid 12345"


@pytest.mark.parametrize("plant", [_mode_0644, _flip_a_byte, _symlink, _another_officers,
                                   _owned_by_someone_else])
def test_a_planted_token_file_is_ignored_with_a_warning(live: Live, plant: object) -> None:
    """Whatever was done to the token file, the CLI says so, does not send what it holds,
    logs in afresh and writes a good file over it."""
    send(live, live.jan)  # a good cache
    cli(live.mia, "inbox")  # mia has one too (for _another_officers)
    path = live.jan.with_name(live.jan.name + ".session")
    held = cache_of(live.jan).load_token(ks.load(live.jan, PASSPHRASE))
    assert held is not None
    reason = plant(path)  # type: ignore[operator]
    live.proxy.take()
    _, stderr = send(live, live.jan)
    assert f"warning: ignoring {path}" in stderr and reason in stderr, stderr
    assert held.token not in [s.token for s in live.proxy.seen]
    assert live.proxy.take()[0] == [*LOGIN, SUBMIT]
    assert not path.is_symlink() and os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path).st_uid == os.getuid()


def test_a_token_bound_to_another_certificate_is_never_sent(live: Live) -> None:
    """A cached token pinned to another TLS certificate (the node's changed, or someone
    else answers with a CA-issued one) is dropped before a byte of the request is sent."""
    send(live, live.jan)
    keystore = ks.load(live.jan, PASSPHRASE)
    cache = cache_of(live.jan)
    held = cache.load_token(keystore)
    assert held is not None
    cache.save_token(keystore, held.token, node_expires=None, tls_identity="ab" * 32)
    live.proxy.seen.clear()
    send(live, live.jan)
    assert [s.request for s in live.proxy.seen] == [*LOGIN, SUBMIT]
    assert held.token not in [s.token for s in live.proxy.seen]


def test_a_token_the_node_forgot_costs_one_fresh_login(live: Live) -> None:
    """The node no longer knows the cached token (restart, expiry): one 401, one login,
    the request again."""
    send(live, live.jan)
    keystore = ks.load(live.jan, PASSPHRASE)
    held = cache_of(live.jan).load_token(keystore)
    assert held is not None
    assert asyncio.run(_logout_raw(live, held.token)) == 200  # behind the CLI's back
    live.proxy.take()
    send(live, live.jan)
    assert live.proxy.take()[0] == [SUBMIT, *LOGIN, SUBMIT]


async def _logout_raw(live: Live, token: str) -> int:
    """POST /api/v1/logout with ``token`` straight to the node; the HTTP status."""
    connector = aiohttp.TCPConnector(ssl=officer_client_context(live.net.ca_cert))
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            live.net.nodes["nl"].client_url + "/api/v1/logout",
            headers={"Authorization": f"Bearer {token}"},
            server_hostname=node_hostname("nl")) as answer:
        return answer.status


def test_logout_and_rotation_make_the_token_worthless(live: Live) -> None:
    """After `liaison logout` the node refuses the old token and the files are gone; the
    same after `liaison officer rotate`, which ends every session of the old key."""
    for command in (("logout",), ("officer", "rotate")):
        send(live, live.mia, to="nl/jdevries")
        held = cache_of(live.mia).load_token(ks.load(live.mia, PASSPHRASE))
        assert held is not None
        cli(live.mia, *command)
        assert not live.mia.with_name(live.mia.name + ".session").exists()
        assert not live.mia.with_name(live.mia.name + ".directory").exists()
        assert asyncio.run(_logout_raw(live, held.token)) == 401, command


INBOX_PROBE = """
import sys
sys.argv = ["liaison", *sys.argv[1:]]
from liaison_net.cli.main import main
try:
    main()
except SystemExit:
    pass
server = ("aiohttp.web", "aiosqlite", "liaison_net.store", "liaison_net.services",
          "liaison_net.node", "liaison_net.federation", "liaison_net.officer_api",
          "liaison_net.admin_api", "structlog")
print("LOADED", " ".join(sorted(m for m in sys.modules if m.startswith(server))))
"""


def test_inbox_imports_no_server_stack(live: Live) -> None:
    """`liaison inbox`, listing a real inbox and sending "delivered" back, loads the
    officer's client only: no aiohttp server, store, services, node doors or structlog."""
    send(live, live.jan)
    out = subprocess.run([sys.executable, "-c", INBOX_PROBE, "inbox", "--keystore",
                          str(live.mia)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LIAISON_PASSPHRASE": PASSPHRASE.decode()},
                         check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("LOADED"))
    assert line.split()[1:] == []
