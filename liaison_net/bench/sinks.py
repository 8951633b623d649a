"""Where the bench watches arrivals: one small process per run, beside the destination.

A sink records, for every arrival of a key it was told to expect, the key and the wall
clock (``time.time_ns``, shared by every process of this machine) at which it saw it:

* ``sqlite``: polls our destination node's inbox table (WAL: readers never block the node)
  for rows committed since the last poll, every millisecond or sooner. An arrival is
  therefore a *committed* inbox row, seen at most about a millisecond late.
* ``mqtt``: a subscriber on the destination Mosquitto broker, QoS 1, a persistent session
  (clean_session false, fixed client id) that reconnects after the broker restarts.
* ``amqp``: a consumer on the destination RabbitMQ node's durable queue, manual acks.

It runs in its own process so that its clock readings do not wait for the submitting
process's GIL. It keeps every arrival (duplicates too) and writes them to ``out_file`` as
24-byte records (16-byte key, 8-byte big-endian ns) when told to stop. This module
imports nothing heavy at the top: it is what the spawned process loads.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

KEY_BYTES = 16
RECORD_BYTES = KEY_BYTES + 8
POLL_S = 0.0005


@dataclass(frozen=True)
class SinkSpec:
    kind: str  # "sqlite", "mqtt" or "amqp"
    keys_file: str  # the expected keys, 16 bytes each, concatenated
    out_file: str
    database: str = ""  # sqlite: the destination node's database; postgresql: its DSN
    officer: str = ""  # sqlite, postgresql: whose inbox
    password_file: str = ""  # postgresql: the database's password file
    port: int = 0  # mqtt, amqp: the destination broker's port
    name: str = ""  # mqtt: topic filter; amqp: queue


class _Recorder:
    def __init__(self, spec: SinkSpec, distinct: Any, total: Any, cpu: Any = None) -> None:
        raw = Path(spec.keys_file).read_bytes()
        self.expected = {raw[i:i + KEY_BYTES] for i in range(0, len(raw), KEY_BYTES)}
        self.seen: set[bytes] = set()
        self.records: list[tuple[bytes, int]] = []
        self._distinct = distinct
        self._total = total
        self._cpu = cpu
        self._settled = False

    def ready(self, ready: Event) -> None:
        """Note the CPU spent so far (starting up: not the scenario's), then say ready.
        Once: a sink that reconnects (a broker restarted) says ready again. The first time
        its heap is settled too (``heap.settle_heap``): a full collection of the sink's own
        would delay the arrivals it notes."""
        if not ready.is_set() and not self._settled:
            from liaison_net.heap import settle_heap  # gc only

            settle_heap()
            self._settled = True
        if self._cpu is not None and not self._cpu[0]:
            self._cpu[0] = time.process_time()
        ready.set()

    def exiting(self) -> None:
        """Note the CPU spent in all: the last thing the process does."""
        if self._cpu is not None:
            self._cpu[1] = time.process_time()

    def arrived(self, key: bytes, at: int) -> None:
        if key in self.expected:
            self.records.append((key, at))
            self.seen.add(key)

    def publish(self) -> None:
        """Make the counts visible to the bench (cheap: called once per poll or batch)."""
        self._distinct.value = len(self.seen)
        self._total.value = len(self.records)

    def write(self, out_file: str) -> None:
        Path(out_file).write_bytes(b"".join(k + t.to_bytes(8, "big") for k, t in self.records))


def read_records(path: Path) -> list[tuple[bytes, int]]:
    raw = path.read_bytes() if path.exists() else b""
    return [(raw[i:i + KEY_BYTES], int.from_bytes(raw[i + KEY_BYTES:i + RECORD_BYTES], "big"))
            for i in range(0, len(raw) - RECORD_BYTES + 1, RECORD_BYTES)]


def sink_main(spec: SinkSpec, stop: Event, ready: Event, distinct: Any, total: Any,
              cpu: Any = None) -> None:
    """Entry point of the sink process. ``cpu``: two doubles, its CPU seconds when ready and
    when done (``time.process_time``), so that the bench counts what watching cost."""
    from liaison_net import timeline

    timeline.start("sink")  # off unless LIAISON_TIMELINE is set (measuring)
    recorder = _Recorder(spec, distinct, total, cpu)
    try:
        if spec.kind in ("sqlite", "postgresql"):
            _sqlite(spec, recorder, stop, ready)
        elif spec.kind == "mqtt":
            _mqtt(spec, recorder, stop, ready)
        elif spec.kind == "amqp":
            _amqp(spec, recorder, stop, ready)
        else:
            raise ValueError(f"unknown sink kind {spec.kind!r}")
    finally:
        recorder.publish()
        recorder.write(spec.out_file)
        timeline.flush()
        recorder.exiting()


def _sqlite(spec: SinkSpec, recorder: _Recorder, stop: Event, ready: Event) -> None:
    from liaison_net import timeline
    from liaison_net.store.observe import (  # light: sqlite3 (psycopg only if asked)
        InboxPoller,
        PgDatabase,
        PgInboxPoller,
    )

    poller: InboxPoller | PgInboxPoller = (
        PgInboxPoller(PgDatabase(spec.database, Path(spec.password_file)), spec.officer)
        if spec.kind == "postgresql" else InboxPoller(Path(spec.database), spec.officer))
    recorder.ready(ready)
    try:
        while not stop.is_set():
            ids = poller.poll()
            if ids is None:
                time.sleep(0.05)  # no file yet, not migrated yet, or busy during recovery
                continue
            at = time.time_ns()
            for envelope_id in ids:
                recorder.arrived(envelope_id, at)
                timeline.mark("sink.seen", envelope_id)
            recorder.publish()
            if not ids:
                time.sleep(POLL_S)
    finally:
        poller.close()


def _mqtt(spec: SinkSpec, recorder: _Recorder, stop: Event, ready: Event) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    def on_connect(client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        # Subscribe on every connect: after a crash the broker may have lost our session.
        if not getattr(reason, "is_failure", False):
            client.subscribe(spec.name, qos=1)

    def on_subscribe(*_args: Any) -> None:
        recorder.ready(ready)

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        recorder.arrived(bytes(message.payload[:KEY_BYTES]), time.time_ns())

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="liaison-bench-sink",
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    client.connect_async("127.0.0.1", spec.port, keepalive=10)
    client.loop_start()
    try:
        while not stop.wait(0.02):
            recorder.publish()
    finally:
        client.disconnect()
        client.loop_stop()


def _amqp(spec: SinkSpec, recorder: _Recorder, stop: Event, ready: Event) -> None:
    import pika
    import pika.exceptions

    params = pika.ConnectionParameters("127.0.0.1", spec.port, heartbeat=30,
                                       connection_attempts=1, socket_timeout=2)
    while not stop.is_set():
        try:
            conn = pika.BlockingConnection(params)
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.2)
            continue
        last_tag = acked = 0
        try:
            channel = conn.channel()
            channel.queue_declare(spec.name, durable=True)
            channel.basic_qos(prefetch_count=2000)

            def on_message(_ch: Any, method: Any, _props: Any, body: bytes) -> None:
                nonlocal last_tag
                recorder.arrived(bytes(body[:KEY_BYTES]), time.time_ns())
                last_tag = method.delivery_tag

            channel.basic_consume(spec.name, on_message)
            recorder.ready(ready)
            while not stop.is_set():
                conn.process_data_events(time_limit=0.01)
                if last_tag > acked:
                    channel.basic_ack(last_tag, multiple=True)
                    acked = last_tag
                recorder.publish()
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.2)  # the broker went away (the crash scenario): reconnect
        finally:
            with contextlib.suppress(Exception):
                conn.close()
