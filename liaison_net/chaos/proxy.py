"""A TCP proxy in front of every federation listener, so the soak can cut and heal links.

Each node's ``[[peers]]`` url points at one listener here per directed pair (``src`` ->
``dst``), which forwards the bytes, untouched, to ``dst``'s federation port: mutual TLS
runs end to end through it, so the nodes cannot tell. ``cut(a, b)`` aborts the live
connections of both directions of the pair and aborts each new one on arrival (the node
sees a connection closed before any answer, as when a firewall drops the route); ``heal``
passes bytes again. A link holds at most ``max_connections`` at once, and moves at most
``CHUNK`` bytes per read, so a misbehaving node cannot make the harness grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from dataclasses import dataclass, field

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


def pair(a: str, b: str) -> frozenset[str]:
    """A link between two nodes, whichever way the connection goes."""
    if a == b:
        raise ValueError(f"a link joins two different nodes, not {a} to itself")
    return frozenset((a, b))


@dataclass(eq=False)  # hashed by identity: a link holds a set of them
class _Connection:
    """One proxied connection: the node's side and the peer's side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


@dataclass
class LinkStats:
    accepted: int = 0  # connections passed through
    dropped: int = 0  # connections aborted on arrival (cut, full, or the peer is down)
    aborted: int = 0  # live connections aborted by a cut
    bytes: int = 0  # bytes forwarded, both ways


@dataclass
class _Link:
    src: str
    dst: str
    server: asyncio.Server
    port: int
    connections: set[_Connection] = field(default_factory=set)
    stats: LinkStats = field(default_factory=LinkStats)


class ChaosProxy:
    """``await proxy.start()``, point peers at ``proxy.port(src, dst)``, set each node's
    ``target`` port, then ``cut``/``heal`` at will; ``await proxy.close()`` at the end."""

    def __init__(self, nodes: tuple[str, ...], *, host: str = "127.0.0.1",
                 max_connections: int = 32) -> None:
        if len(set(nodes)) != len(nodes) or len(nodes) < 2:
            raise ValueError("the proxy needs two or more distinct nodes")
        self.nodes = nodes
        self.host = host
        self.max_connections = max_connections
        self.targets: dict[str, int] = {}  # node -> its federation port
        self._links: dict[tuple[str, str], _Link] = {}
        self._cut: set[frozenset[str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen once per directed pair, each on a free port of ``host``."""
        for src, dst in itertools.permutations(self.nodes, 2):
            server = await asyncio.start_server(
                functools.partial(self._accept, src, dst), self.host, 0)
            port = int(server.sockets[0].getsockname()[1])
            self._links[(src, dst)] = _Link(src, dst, server, port)

    def port(self, src: str, dst: str) -> int:
        """Where ``src`` reaches ``dst``: the port to put in ``src``'s [[peers]] url."""
        return self._links[(src, dst)].port

    def is_cut(self, a: str, b: str) -> bool:
        return pair(a, b) in self._cut

    @property
    def cut_pairs(self) -> set[frozenset[str]]:
        return set(self._cut)

    def cut(self, a: str, b: str) -> int:
        """Partition ``a`` from ``b`` (both ways); returns the live connections aborted."""
        self._cut.add(pair(a, b))
        aborted = 0
        for key in ((a, b), (b, a)):
            link = self._links[key]
            live = list(link.connections)
            link.connections.clear()
            for conn in live:
                conn.abort()
            link.stats.aborted += len(live)
            aborted += len(live)
        return aborted

    def heal(self, a: str, b: str) -> None:
        self._cut.discard(pair(a, b))

    def heal_all(self) -> None:
        self._cut.clear()

    def stats(self) -> dict[str, LinkStats]:
        return {f"{link.src}->{link.dst}": link.stats for link in self._links.values()}

    def live_connections(self) -> int:
        return sum(len(link.connections) for link in self._links.values())

    async def close(self) -> None:
        """Stop listening and abort every connection (safe to call twice)."""
        for link in self._links.values():
            link.server.close()
            for conn in list(link.connections):
                conn.abort()
            link.connections.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for link in self._links.values():
            with contextlib.suppress(Exception):
                await link.server.wait_closed()

    # --- one connection -------------------------------------------------------------------

    def _accept(self, src: str, dst: str, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(src, dst, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, src: str, dst: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        link = self._links[(src, dst)]
        target = self.targets.get(dst)
        if self.is_cut(src, dst) or target is None \
                or len(link.connections) >= self.max_connections:
            link.stats.dropped += 1
            writer.transport.abort()
            return
        conn = _Connection(writer)
        link.connections.add(conn)  # counted (and cut) while it connects, too
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    up_reader, conn.upstream = await asyncio.open_connection(self.host, target)
            except (OSError, TimeoutError):
                link.stats.dropped += 1  # the peer is down: the node sees a closed connection
                return
            if conn not in link.connections:  # cut while connecting
                return
            link.stats.accepted += 1
            await asyncio.gather(self._pipe(reader, conn.upstream, link, conn),
                                 self._pipe(up_reader, writer, link, conn))
        finally:
            conn.abort()
            link.connections.discard(conn)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link,
                    conn: _Connection) -> None:
        """Copy one direction until EOF (then half-close), or abort both on any error."""
        try:
            while data := await reader.read(CHUNK):
                if writer.transport.is_closing():
                    raise ConnectionResetError("the other side went away")
                writer.write(data)
                link.stats.bytes += len(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (OSError, RuntimeError):
            conn.abort()
