"""A desk against a real network: nodes nl and be on loopback, officers enrolled with the
CLI, and `liaison desk` started as the officer would start it (its own process, the
passphrase from the environment, the login link read from its output)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from liaison_net.drills.harness import LIAISON, Deadline, HarnessTimeout
from tests.integration.network import Network
from tests.integration.officers import PASSPHRASE, OfficerAgent, enrol
from tests.waits import PATIENCE_S

LINK_PREFIX = "open this link (it works once): "


@dataclass
class DeskNet:
    net: Network
    desk: OfficerAgent  # nl/desk: the duty desk of nl, who runs the desk app
    peer: OfficerAgent  # be/jpeeters, who writes to it
    peer_desk: OfficerAgent  # be/desk, who gets the signals nl raises


@contextmanager
def desk_network(root: Path) -> Iterator[DeskNet]:
    net = Network.create(root, node_ids=("nl", "be"))
    try:
        desk = enrol(net, "nl/desk")
        peer = enrol(net, "be/jpeeters")
        peer_desk = enrol(net, "be/desk")
        net.start("nl")
        net.start("be")
        yield DeskNet(net, desk, peer, peer_desk)
    finally:
        net.stop_all()


@dataclass
class RunningDesk:
    process: subprocess.Popen[str]
    login_url: str

    @property
    def port(self) -> int:
        return int(self.login_url.split("://127.0.0.1:", 1)[1].split("/", 1)[0])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def officer_env() -> dict[str, str]:
    return {**os.environ, "LIAISON_PASSPHRASE": PASSPHRASE.decode(), "PYTHONUNBUFFERED": "1"}


@contextmanager
def running_desk(agent: OfficerAgent) -> Iterator[RunningDesk]:
    """`liaison desk --keystore K --no-browser`, until its login link is printed; killed
    (by PID) when the block ends."""
    process = subprocess.Popen(
        [*LIAISON, "desk", "--keystore", str(agent.path), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=officer_env())
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []

        def link() -> str | None:
            while not lines.empty():
                line = lines.get_nowait()
                seen.append(line)
                if line.startswith(LINK_PREFIX):
                    return line[len(LINK_PREFIX):].strip()
            if process.poll() is not None:
                raise AssertionError(f"liaison desk exited: {''.join(seen)}")
            return None

        try:
            url = Deadline(PATIENCE_S).wait_for(link, what="the desk's login link")
        except HarnessTimeout as exc:
            raise AssertionError(f"{exc}: {''.join(seen)}") from None
        yield RunningDesk(process, str(url))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
