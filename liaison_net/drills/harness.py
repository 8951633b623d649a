"""The node-process harness: real ``liaison node serve`` processes on 127.0.0.1.

One harness for the demo, the bench, the chaos soak and the integration tests, so that
each starts, waits for and stops a node the same way:

- **configs** are TOML written by a TOML writer from a dict (``write_node_config``), never
  by string formatting, so a value with a quote in it cannot break the file;
- **start**: ``python -m liaison_net.cli node serve`` in a session of its own (a Ctrl-C in
  the terminal reaches only the drill, which then stops its nodes itself), stdin closed,
  stdout and stderr appended to the node's log file, so a restart keeps the history;
- **wait**: bounded polling against a ``Deadline`` until both listeners accept, failing
  at once, with the log's tail, if the process exits instead; never a fixed sleep;
- **stop**: only the processes this harness started, by the PID of their ``Popen``:
  SIGTERM (the node shuts down cleanly), then SIGKILL for any that outlive the grace
  period; or SIGKILL at once, which is how a drill crashes a node.

Layout under a root directory (the configs name the data and certificates relative to
their own directory, as node_configs/ does)::

    certs/<id>/               the node's TLS and signing certificates (made by the caller)
    configs/<id>.toml         its config (``NodeSet.write_configs``)
    data/<id>/node.sqlite3    its database (made by the node on first start)
    logs/<id>.log             its JSON log
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import tomli_w

from liaison_net.pki.certificates import CA_CERT_FILE
from liaison_net.store.observe import PgDatabase, Where

T = TypeVar("T")

LIAISON = (sys.executable, "-m", "liaison_net.cli")
#: How long a node may take to shut down on SIGTERM before it is killed.
STOP_GRACE_S = 5.0
#: How long to wait for a signalled process to exit (a node killed with SIGKILL exits at
#: once; SIGTERM drains first).
EXIT_TIMEOUT_S = 30.0
POLL_S = 0.05
DATABASE_FILE = "node.sqlite3"


class HarnessError(Exception):
    """A node process did not do what the harness waited for; the message says what."""


class HarnessTimeout(HarnessError):
    """A ``Deadline`` ran out."""


class Deadline:
    """One time budget that a sequence of waits draws from."""

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def left(self, what: str) -> float:
        """Seconds left, or HarnessTimeout naming ``what`` was being waited for."""
        left = self.remaining()
        if left <= 0:
            raise HarnessTimeout(f"the {self.total:g} s timeout ran out while {what}")
        return left

    def wait_for(self, condition: Callable[[], T | None], *, what: str,
                 interval: float = POLL_S) -> T:
        """Poll ``condition()`` until it returns something truthy, within the deadline."""
        while True:
            value = condition()
            if value:
                return value
            time.sleep(min(interval, self.left(what)))


#: Where ``free_ports`` picks from: None asks the kernel for an ephemeral port; a range
#: (``use_port_range``) keeps one process's picks apart from every other process's, as
#: the test suite does for each of its parallel workers.
_port_range: range | None = None
_port_cursor = 0


def use_port_range(ports: range) -> None:
    """Pick from ``ports`` from now on, in turn, skipping any that cannot be bound.

    A port the kernel hands out (``bind(..., 0)``) is free only until the socket closes:
    another process asking the kernel, or any outgoing connection, may get the same port
    before the node binds it. Ports below the kernel's ephemeral range, split between the
    processes that pick them, are never handed out by anyone else."""
    global _port_range, _port_cursor
    if len(ports) < 16:
        raise ValueError(f"a port range needs at least 16 ports, not {len(ports)}")
    # From a random place: two unrelated runs given the same range rarely meet.
    _port_range, _port_cursor = ports, random.randrange(len(ports))


def ephemeral_port_floor(default: int = 32768) -> int:
    """The lowest port the kernel hands out on its own (Linux; ``default`` elsewhere)."""
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
        return int(low)
    except (OSError, IndexError, ValueError):
        return default


#: Where a process started by another (the bench or a drill run by a test worker) picks
#: its ports: "LOW-HIGH", the parent's own range (``export_port_range``).
PORT_RANGE_ENV = "LIAISON_PORT_RANGE"


def export_port_range(ports: range) -> None:
    """Pick from ``ports`` here and in every process started from now on."""
    use_port_range(ports)
    os.environ[PORT_RANGE_ENV] = f"{ports.start}-{ports.stop}"


def _range_from_env() -> range | None:
    text = os.environ.get(PORT_RANGE_ENV, "")
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        return None
    ports = range(int(low), int(high))
    return ports if ports.start >= 1024 and ports.stop <= 65536 and len(ports) >= 16 else None


def avoid_ephemeral_ports(span: int = 8000) -> None:
    """Unless a range was set (here or by the parent, ``PORT_RANGE_ENV``), pick below the
    kernel's ephemeral range from now on. For a node that connects out before it listens
    (on PostgreSQL: its store first), a port the kernel handed out and took back may be
    given to that very connection before the node binds it."""
    if _port_range is not None or _range_from_env() is not None:
        return
    floor = ephemeral_port_floor()
    use_port_range(range(max(1024, floor - span), floor))


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open until all are picked)."""
    global _port_cursor
    if _port_range is None and (inherited := _range_from_env()) is not None:
        use_port_range(inherited)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        tries = 0
        while len(ports) < count:
            s = stack.enter_context(socket.socket())
            if _port_range is None:
                s.bind(("127.0.0.1", 0))
            else:
                tries += 1
                if tries > len(_port_range):
                    raise HarnessError(f"no {count} free ports left in {_port_range}")
                port = _port_range[_port_cursor % len(_port_range)]
                _port_cursor += 1
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue  # taken, or still in TIME_WAIT: the next one
            ports.append(int(s.getsockname()[1]))
        return ports


def port_open(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def listens_on(pid: int, ports: Iterable[int]) -> bool | None:
    """True if process ``pid`` holds a listening TCP socket on each of ``ports``; None where
    /proc cannot tell (not Linux). Why: a port our node had (a restart after an outage) may
    be taken meanwhile by another process on a shared machine; then the node cannot bind
    and exits, while a bare connect to the port succeeds (the bench once saw 0 of 10,000
    delivered that way, docs/performance.md, lane bulkv16)."""
    wanted = set(ports)
    listening: dict[str, int] = {}  # socket inode -> port
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == "0A" and port in wanted:  # 0A: LISTEN
                    listening[fields[9]] = port
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (OSError, ValueError, IndexError):
        return None
    held = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:[") and link[8:-1] in listening:
                held.add(listening[link[8:-1]])
    return held == wanted


# --- configs -----------------------------------------------------------------------------


def write_node_config(path: Path, node_id: str, *, federation_port: int, client_port: int,
                      peers: Mapping[str, str],
                      sections: Mapping[str, Mapping[str, Any]] | None = None,
                      comment: str = "") -> dict[str, Any]:
    """Write a node's config to ``path`` and return it as the dict that was written.

    ``peers`` maps each peer's id to the https url this node reaches it at; ``sections``
    adds tables ([delivery], [signals], [federation], ...) with the keys liaison_net.config
    reads. Data and certificates are named ``../data/<id>`` and ``../certs/<id>``, relative
    to the config's own directory."""
    config: dict[str, Any] = {
        "node": {"id": node_id, "data_dir": f"../data/{node_id}",
                 "cert_dir": f"../certs/{node_id}"},
        "listen": {"federation": f"127.0.0.1:{federation_port}",
                   "client": f"127.0.0.1:{client_port}"},
    }
    for name, table in (sections or {}).items():
        config[name] = {**config.get(name, {}), **table}
    if peers:
        config["peers"] = [{"id": pid, "url": url} for pid, url in peers.items()]
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + tomli_w.dumps(config), encoding="utf-8")
    return config


# --- one node process --------------------------------------------------------------------


@dataclass
class NodeProcess:
    """One node: where its config and log are, its ports, and the process now running it."""

    id: str
    config: Path
    federation_port: int
    client_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    log_level: str | None = None  # --log-level for `node serve`; None: the node's default
    extra_args: tuple[str, ...] = ()  # more `node serve` options (a drill's clock offset)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def federation_url(self) -> str:
        return f"https://127.0.0.1:{self.federation_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> int:
        """Start the node (its log appended to); its PID. Does not wait for it."""
        if self.running():
            raise HarnessError(f"node {self.id} is already running")
        argv = [*LIAISON, "node", "serve", "--config", str(self.config)]
        if self.log_level is not None:
            argv += ["--log-level", self.log_level]
        argv += self.extra_args
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
        return self.proc.pid

    def listening(self) -> bool:
        """True once both listeners accept and are this process's (not another's that took
        a port meanwhile); HarnessError if the process has exited."""
        if self.proc is None:
            raise HarnessError(f"node {self.id} was never started")
        if self.proc.poll() is not None:
            raise HarnessError(f"node {self.id} exited with code {self.proc.returncode}; "
                               f"its log {self.log} ends:\n{self.log_tail()}")
        ports = (self.federation_port, self.client_port)
        return all(port_open(p) for p in ports) and listens_on(self.proc.pid, ports) is not False

    def wait_ready(self, deadline: Deadline, *, interval: float = POLL_S) -> None:
        deadline.wait_for(self.listening, what=f"waiting for node {self.id} to listen",
                          interval=interval)

    def signal(self, sig: int = signal.SIGKILL, *, timeout: float = EXIT_TIMEOUT_S) -> None:
        """Send ``sig`` to the process we started and wait until it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], *,
                   grace: float = STOP_GRACE_S, first: int = signal.SIGTERM) -> list[int]:
    """Stop processes we started, by PID: ``first`` to all of them, then SIGKILL to any
    still running after ``grace`` seconds. Returns the PIDs that had to be killed.

    With ``first=SIGKILL`` nothing is waited for but the exits. Safe on processes that
    have already exited."""
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(first)
    end = time.monotonic() + grace
    killed = []
    for proc in alive:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT_S)
            killed.append(proc.pid)
    return killed


# --- a set of nodes under one root --------------------------------------------------------


@dataclass
class NodeSet:
    """Node processes under one root directory, by node id.

    ``extra_procs`` holds other processes a caller started beside the nodes (a CLI left
    following a stream); ``stop_all`` stops them too."""

    root: Path
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    extra_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_level: str | None = None
    #: Nodes kept on PostgreSQL instead of their SQLite file (`--store postgresql`): each
    #: one's config gets a [store] table naming this database.
    pg_stores: dict[str, PgDatabase] = field(default_factory=dict)
    #: How often a wait for a node to listen looks again.
    READY_POLL_S: ClassVar[float] = POLL_S

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs / CA_CERT_FILE

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes.values() if n.pid is not None]

    def lay_out(self, node_ids: Iterable[str]) -> None:
        """A NodeProcess for each id, on free loopback ports (nothing is written yet)."""
        ids = list(node_ids)
        ports = free_ports(2 * len(ids))
        for i, nid in enumerate(ids):
            self.nodes[nid] = NodeProcess(
                nid, self.root / "configs" / f"{nid}.toml", ports[2 * i], ports[2 * i + 1],
                self.root / "logs" / f"{nid}.log", log_level=self.log_level)

    def write_configs(self, *, sections: Mapping[str, Mapping[str, Any]] | None = None,
                      peer_urls: Mapping[tuple[str, str], str] | None = None,
                      comment: str = "") -> None:
        """Every node's config; each node has every other as a peer, reached at
        ``peer_urls[(node, peer)]`` if given, else at the peer's federation listener.
        ``{node}`` in ``comment`` stands for the node's id."""
        for node in self.nodes.values():
            peers = {other.id: (peer_urls or {}).get((node.id, other.id), other.federation_url)
                     for other in self.nodes.values() if other.id != node.id}
            write_node_config(node.config, node.id, federation_port=node.federation_port,
                              client_port=node.client_port, peers=peers,
                              sections=self._sections_of(node.id, sections),
                              comment=comment.replace("{node}", node.id))

    def start_node(self, nid: str, deadline: Deadline | None = None) -> int:
        """Start one node, its PID; with ``deadline``, wait until it listens."""
        pid = self.nodes[nid].start()
        if deadline is not None:
            self.wait_node(nid, deadline)
        return pid

    def start_all(self, deadline: Deadline) -> None:
        """Start every node, then wait until each listens on both its ports."""
        for node in self.nodes.values():
            node.start()
        for nid in self.nodes:
            self.wait_node(nid, deadline)

    def wait_node(self, nid: str, deadline: Deadline) -> None:
        self.nodes[nid].wait_ready(deadline, interval=self.READY_POLL_S)

    def stop_node(self, nid: str, *, kill: bool) -> None:
        """SIGKILL (a crash), or SIGTERM and wait, then SIGKILL after the grace period."""
        node = self.nodes[nid]
        if node.proc is not None:
            stop_processes([node.proc], first=signal.SIGKILL if kill else signal.SIGTERM)

    def stop_all(self, *, first: int = signal.SIGTERM) -> list[int]:
        """Stop every process this set started (by PID): ``first``, grace, SIGKILL.

        Returns the PIDs that had to be killed. Safe to call twice, and on a half-started
        set."""
        procs = [n.proc for n in self.nodes.values() if n.proc is not None]
        return stop_processes([*procs, *self.extra_procs], first=first)

    def pid(self, nid: str) -> int | None:
        """The running node's PID (None while it is down)."""
        node = self.nodes[nid]
        return node.pid if node.running() else None

    def database(self, nid: str) -> Path:
        return self.root / "data" / nid / DATABASE_FILE

    def store(self, nid: str) -> Where:
        """Node ``nid``'s database, on whichever engine it runs: what ``observe`` reads."""
        return self.pg_stores.get(nid) or self.database(nid)

    def _sections_of(self, nid: str, sections: Mapping[str, Mapping[str, Any]] | None,
                     ) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = dict(sections or {})
        pg = self.pg_stores.get(nid)
        if pg is not None:
            out["store"] = {**out.get("store", {}), "backend": "postgresql", "dsn": pg.dsn,
                            "password_file": str(pg.password_file)}
        return out
