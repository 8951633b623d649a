"""The references: what operators would otherwise deploy, on the same machine, same run.

* **Mosquitto** (Debian's ``mosquitto``): two brokers, the origin bridged to the destination
  with ``topic bench/# out 1`` (QoS 1), persistence on with Debian's defaults otherwise
  (``autosave_interval`` 1800 s: the in-memory state reaches the disk at a clean shutdown
  or every 30 minutes). ``max_queued_messages 0`` (no cap), so that an outage queue is not
  cut at 1,000 by configuration. The publisher waits for each PUBACK (QoS 1); the
  subscriber on the destination keeps a persistent session (clean_session false).
* **RabbitMQ** (Debian's ``rabbitmq-server``): two independent nodes; a static shovel on
  the origin moves the durable queue ``outbox`` to the destination's durable queue
  ``inbox`` with ``ack_mode on_confirm``; messages are persistent and the publisher waits
  for each publisher confirm; the consumer acks manually.

Both brokers carry the very envelope bytes our nodes carry (prefixed by the envelope id).
They are started from their packaged binaries as our own processes, on 127.0.0.1 and free
ports, with their state under the bench directory, and stopped by PID at the end. If a
broker is missing the bench installs it with apt-get when it runs as root (never in
--quick); if it cannot, every figure of that broker says why it is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from liaison_net.bench.cost import Probe
from liaison_net.bench.scenarios import Plan, System, Ui
from liaison_net.bench.sinks import SinkSpec
from liaison_net.drills.harness import free_ports, port_open

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
STOP_GRACE_S = 30.0
RESTART_ATTEMPTS = 3  # a RabbitMQ node restarted under a name epmd still holds exits
START_TIMEOUT_S = 90.0


async def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str,
                     timeout: float = START_TIMEOUT_S) -> None:
    end = time.monotonic() + timeout
    while not await asyncio.to_thread(port_open, port):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > end:
            raise TimeoutError(f"{what} did not listen on port {port} within {timeout:g} s")
        await asyncio.sleep(0.05)


class Broker:
    """One broker process we started, in a session of its own (so its children too)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, kill: bool) -> None:
        """SIGKILL the whole process group (a crash), or SIGTERM it and wait."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_GRACE_S)
        # Whatever the leader left behind in its group (an Erlang port program) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


# --- availability and installation --------------------------------------------------------


def _apt_install(package: str, ui: Ui) -> str | None:
    """Install a Debian package as root; None on success, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"{package} is not installed and installing it needs root (apt-get install -y " \
               f"{package})"
    if shutil.which("apt-get") is None:
        return f"{package} is not installed and apt-get is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ui.note(f"installing {package} with apt-get (a few minutes at most)")
    result: subprocess.CompletedProcess[str] | None = None
    for update_first in (False, True):
        try:
            if update_first:
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                               text=True, timeout=600, check=False)
            result = subprocess.run(["apt-get", "install", "-y", "-q", package], env=env,
                                    capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"apt-get install {package} failed: {exc}"
        if result.returncode == 0:
            return None
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] if result else []
    return f"apt-get install {package} failed: {' '.join(tail)[:200]}"


def availability(system: System, *, quick: bool, ui: Ui) -> str | None:
    """None if ``system`` can run (installing its broker if needed), else the reason."""
    assert isinstance(system, BaselineSystem)
    for module, package in system.clients:
        if importlib.util.find_spec(module) is None:
            return f"Python client {package} is not installed (pip install " \
                   "'liaison_net[bench]')"
    if system.installed():
        return None
    if quick:
        return f"{system.package} is not installed (--quick installs nothing)"
    reason = _apt_install(system.package, ui)
    if reason is None and not system.installed():
        reason = f"{system.package} installed, yet {system.binary} is still missing"
    return reason


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0][:100] if text else None


def describe_setup() -> dict[str, Any]:
    return {
        "mosquitto": {
            "version": _version(["mosquitto", "-h"]) if shutil.which("mosquitto") else None,
            "setup": "two brokers, bridge `topic bench/# out 1` (QoS 1), cleansession false, "
                     "persistence true (autosave_interval 1800 s, the default), "
                     "max_queued_messages 0; publisher QoS 1 waits for PUBACK; subscriber "
                     "QoS 1, persistent session",
        },
        "rabbitmq": {
            "version": _version(["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"])
            if shutil.which("dpkg-query") else None,
            "setup": "two nodes, static shovel outbox -> inbox, ack_mode on_confirm, durable "
                     "classic queues, persistent messages, publisher confirms, consumer "
                     "manual acks",
        },
    }


class BaselineSystem(System):
    """Two brokers, origin and destination; the fault scenarios act on the destination."""

    package: str
    binary: str
    clients: tuple[tuple[str, str], ...]
    brokers: dict[str, Broker]
    ports: dict[str, int]

    def installed(self) -> bool:
        return shutil.which(self.binary) is not None or Path(self.binary).is_file()

    def probes(self) -> dict[str, Probe]:
        """Each broker's process group (its start script's children too) and its directory
        (state, config and logs; the logs are small at the levels configured)."""
        out = {}
        for role, broker in self.brokers.items():
            pid = broker.proc.pid if broker.running() and broker.proc is not None else None
            out[role] = Probe(pid, True, (self.workdir / role,))
        return out

    async def stop_destination(self, *, kill: bool) -> None:
        await asyncio.to_thread(self.brokers["destination"].stop, kill=kill)

    async def start_destination(self, *, wait: bool) -> None:
        self.brokers["destination"].start()
        if wait:
            await self.wait_destination()

    async def wait_destination(self) -> None:
        broker = self.brokers["destination"]
        await _wait_port(self.ports["destination"], broker.proc, f"{self.name} destination")


# --- Mosquitto ----------------------------------------------------------------------------


class _MqttPublisher:
    """paho-mqtt behind an asyncio face: ``await publish()`` returns at the PUBACK."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._mqtt = mqtt
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.connected = asyncio.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: set[int] = set()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="liaison-bench-pub",
                             clean_session=True, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client = client

    def _on_connect(self, *_args: Any) -> None:
        self.loop.call_soon_threadsafe(self.connected.set)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, *_rest: Any) -> None:
        with self._lock:
            future = self._pending.pop(mid, None)
            if future is None:
                self._early.add(mid)
                return
        self.loop.call_soon_threadsafe(_resolve, future)

    async def start(self) -> None:
        self.client.connect_async("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        async with asyncio.timeout(30):
            await self.connected.wait()

    async def publish(self, topic: str, payload: bytes) -> None:
        future: asyncio.Future[None] = self.loop.create_future()
        info = self.client.publish(topic, payload, qos=1)
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"paho publish failed with rc {info.rc}")
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                return
            self._pending[info.mid] = future
        await future

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MosquittoSystem(BaselineSystem):
    name = "mosquitto"
    label = "Mosquitto"
    package = "mosquitto"
    binary = "mosquitto"
    clients = (("paho.mqtt", "paho-mqtt"),)
    topic = "bench/inbox"

    def __init__(self, workdir: Path, plan: Plan) -> None:
        super().__init__(workdir / "mosquitto", plan)
        self.brokers: dict[str, Broker] = {}
        self.ports: dict[str, int] = {}
        self.publisher: _MqttPublisher | None = None

    def _config(self, role: str) -> Path:
        d = self.workdir / role
        d.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.ports[role]} 127.0.0.1", "allow_anonymous true",
                 "persistence true", f"persistence_location {d}/",
                 "max_queued_messages 0", f"log_dest file {d}/mosquitto.log",
                 "log_type error", "log_type warning", "log_type notice"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else it drops to user mosquitto, who cannot write d/
        if role == "origin":
            lines += ["", "connection to-destination",
                      f"address 127.0.0.1:{self.ports['destination']}",
                      "topic bench/# out 1", "cleansession false",
                      "remote_clientid liaison-bench-bridge", "restart_timeout 1 1",
                      "bridge_protocol_version mqttv311", "try_private true"]
        path = d / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    async def open(self, ui: Ui) -> None:
        ui.note("Mosquitto: two brokers, bridged at QoS 1")
        ports = free_ports(2)
        self.ports = {"origin": ports[0], "destination": ports[1]}
        for role in ("destination", "origin"):
            self.brokers[role] = Broker(f"mosquitto {role}",
                                        [shutil.which(self.binary) or self.binary, "-c",
                                         str(self._config(role))],
                                        dict(os.environ), self.workdir / f"{role}.out")
            self.brokers[role].start()
            await _wait_port(self.ports[role], self.brokers[role].proc, f"mosquitto {role}")
        self.publisher = _MqttPublisher(self.ports["origin"])
        await self.publisher.start()

    async def close(self) -> None:
        if self.publisher is not None:
            await asyncio.to_thread(self.publisher.stop)
            self.publisher = None
        for broker in self.brokers.values():
            await asyncio.to_thread(broker.stop, kill=False)

    async def submit(self, key: bytes, raw: bytes) -> None:
        assert self.publisher is not None
        await self.publisher.publish(self.topic, key + raw)

    def sink_spec(self, keys_file: Path, out_file: Path) -> SinkSpec:
        return SinkSpec("mqtt", str(keys_file), str(out_file), port=self.ports["destination"],
                        name="bench/#")



# --- RabbitMQ -----------------------------------------------------------------------------


_SHOVEL = """[{{rabbitmq_shovel,
  [{{shovels,
    [{{liaison_bench,
      [{{source, [{{protocol, amqp091}},
                 {{uris, ["amqp://guest:guest@127.0.0.1:{origin}"]}},
                 {{declarations, [{{'queue.declare', [{{queue, <<"outbox">>}}, durable]}}]}},
                 {{queue, <<"outbox">>}},
                 {{prefetch_count, 1000}}]}},
       {{destination, [{{protocol, amqp091}},
                      {{uris, ["amqp://guest:guest@127.0.0.1:{destination}"]}},
                      {{declarations, [{{'queue.declare', [{{queue, <<"inbox">>}}, durable]}}]}},
                      {{publish_properties, [{{delivery_mode, 2}}]}},
                      {{publish_fields, [{{exchange, <<"">>}}, {{routing_key, <<"inbox">>}}]}}]}},
       {{ack_mode, on_confirm}},
       {{reconnect_delay, 1}}]}}]}}]}}].
"""


class RabbitSystem(BaselineSystem):
    name = "rabbitmq"
    label = "RabbitMQ"
    package = "rabbitmq-server"
    binary = str(RABBITMQ_SERVER)
    clients = (("pika", "pika"), ("aio_pika", "aio-pika"))

    def __init__(self, workdir: Path, plan: Plan) -> None:
        super().__init__(workdir / "rabbitmq", plan)
        self.brokers: dict[str, Broker] = {}
        self.ports: dict[str, int] = {}
        self.epmd: Broker | None = None
        self.epmd_port = 0
        self._connection: Any = None
        self._channel: Any = None

    def installed(self) -> bool:
        return RABBITMQ_SERVER.is_file() and shutil.which("epmd") is not None

    def _registered(self, role: str) -> bool:
        """Whether our epmd still lists the ``role`` node (a killed node's name can linger)."""
        try:
            out = subprocess.run([shutil.which("epmd") or "epmd", "-port", str(self.epmd_port),
                                  "-names"], capture_output=True, text=True, timeout=5,
                                 check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        return f"name liaison-bench-{role} " in out

    async def start_destination(self, *, wait: bool) -> None:
        """Start the destination node again. A node whose name epmd still holds (its killed
        predecessor not yet unregistered) exits at once, so wait for the name to go, and
        if it exits during start-up all the same, try again (bounded)."""
        for attempt in range(RESTART_ATTEMPTS):
            end = time.monotonic() + 30
            while (await asyncio.to_thread(self._registered, "destination")
                   and time.monotonic() < end):
                await asyncio.sleep(0.1)
            self.brokers["destination"].start()
            if not wait:
                return
            try:
                await self.wait_destination()
                return
            except RuntimeError:  # exited during start-up
                if attempt == RESTART_ATTEMPTS - 1:
                    raise
                await asyncio.to_thread(self.brokers["destination"].stop, kill=True)

    def _env(self, role: str, epmd_port: int, dist_port: int) -> dict[str, str]:
        d = self.workdir / role
        d.mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.ports[role]}\n", encoding="utf-8")
        (d / "advanced.config").write_text(
            _SHOVEL.format(origin=self.ports["origin"],
                           destination=self.ports["destination"])
            if role == "origin" else "[].\n", encoding="utf-8")
        (d / "enabled_plugins").write_text(
            "[rabbitmq_shovel].\n" if role == "origin" else "[].\n", encoding="utf-8")
        return {
            **os.environ,
            "HOME": str(self.workdir),  # the Erlang cookie goes here, not in root's home
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_NODENAME": f"liaison-bench-{role}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),  # none: ignore /etc
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(d / "log" / "rabbit.log"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
        }

    async def open(self, ui: Ui) -> None:
        import aio_pika

        ui.note("RabbitMQ: two nodes and an on-confirm shovel (about 10 s to boot)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        epmd_port, dist_origin, dist_destination, origin, destination = free_ports(5)
        self.epmd_port = epmd_port
        self.ports = {"origin": origin, "destination": destination}
        self.epmd = Broker("epmd", [shutil.which("epmd") or "epmd", "-port", str(epmd_port),
                                    "-address", "127.0.0.1"],
                           dict(os.environ), self.workdir / "epmd.out")
        self.epmd.start()
        await _wait_port(epmd_port, self.epmd.proc, "epmd", timeout=10)
        for role, dist in (("destination", dist_destination), ("origin", dist_origin)):
            self.brokers[role] = Broker(f"rabbitmq {role}", [str(RABBITMQ_SERVER)],
                                        self._env(role, epmd_port, dist),
                                        self.workdir / f"{role}.out")
            self.brokers[role].start()
        for role in ("destination", "origin"):
            await _wait_port(self.ports[role], self.brokers[role].proc, f"rabbitmq {role}")
        self._connection = await aio_pika.connect(
            f"amqp://guest:guest@127.0.0.1:{origin}/", timeout=30)
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.declare_queue("outbox", durable=True)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
        for broker in self.brokers.values():
            await asyncio.to_thread(broker.stop, kill=False)
        if self.epmd is not None:
            await asyncio.to_thread(self.epmd.stop, kill=False)

    async def submit(self, key: bytes, raw: bytes) -> None:
        import aio_pika

        message = aio_pika.Message(key + raw, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._channel.default_exchange.publish(message, routing_key="outbox")

    def sink_spec(self, keys_file: Path, out_file: Path) -> SinkSpec:
        return SinkSpec("amqp", str(keys_file), str(out_file), port=self.ports["destination"],
                        name="inbox")



def systems(workdir: Path, plan: Plan) -> list[BaselineSystem]:
    return [MosquittoSystem(workdir, plan), RabbitSystem(workdir, plan)]
