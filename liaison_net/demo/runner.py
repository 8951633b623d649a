"""Run the whole demo: build the network, tell the story, stop what was started, summarise.

Every node process is stopped in ``finally``: on success, on a failed check, on an error,
on Ctrl-C and on SIGTERM (turned into KeyboardInterrupt while the demo runs). Only
``--keep`` after a completed story leaves the nodes running, and then the summary says how
to use and stop them.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from liaison_net.demo.network import DESKS, OFFICERS, Deadline, DemoError, DemoNetwork
from liaison_net.demo.report import Outcome, Progress, summary
from liaison_net.demo.scenario import Story
from liaison_net.errors import LiaisonError

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class Result:
    outcome: Outcome
    summary: dict[str, Any]
    exit_code: int


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the demo runs, SIGTERM unwinds like Ctrl-C, so ``finally`` stops the nodes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """While the nodes are being stopped, a second Ctrl-C must not leave some running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                     signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(*, root: Path | None, keep: bool, timeout_s: float, progress: Progress) -> Result:
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    temporary = root is None
    root = Path(tempfile.mkdtemp(prefix="liaison-demo-")) if root is None else root.absolute()
    net = DemoNetwork(root)
    outcome = Outcome()
    error: str | None = None
    trace: str | None = None
    interrupted = False
    kept = False
    with _sigterm_interrupts():
        try:
            progress.title("liaison_net demo: four national nodes on this machine")
            with progress.step("Network CA and node certificates created") as notes:
                net.create()
                notes.append(f"be, nl, lu, de-nw in {root}")
            with progress.step("Node processes started and listening") as notes:
                net.start_all(deadline)
                notes.append(", ".join(f"{n.id} pid {n.pid}" for n in net.nodes.values()))
            with progress.step("Officers and duty desks enrolled by their node "
                               "administrators") as notes:
                net.enrol(OFFICERS + DESKS, deadline)
                notes.append(", ".join(f"{o.spec.name} ({o.id})"
                                       for o in net.officers.values() if not o.spec.is_desk))
                notes.append("duty desks " + ", ".join(o.id for o in net.officers.values()
                                                       if o.spec.is_desk))
            asyncio.run(Story(net, deadline, progress, outcome).run())
            with progress.step("Audit chains verified on every node") as notes:
                outcome.audit = net.audit_verify(deadline)
                entries = sum(int(v.get("entries", 0)) for v in outcome.audit.values())
                notes.append(f"{entries} entries")
            outcome.check("the audit chain verifies on every node",
                          len(outcome.audit) == len(net.nodes)
                          and all(v.get("ok") is True for v in outcome.audit.values()))
            kept = keep
            if kept:
                # For `kill $(cat DIR/pids)`: the README's way to stop a kept network.
                (root / "pids").write_text(" ".join(str(p) for p in net.pids) + "\n")
        except (DemoError, LiaisonError) as exc:
            error = str(exc)
        except KeyboardInterrupt:
            error = "interrupted"
            interrupted = True
        except Exception as exc:  # a bug: still stop the nodes, still report
            error = f"unexpected {type(exc).__name__}: {exc}"
            trace = traceback.format_exc()
        finally:
            if not kept:
                with _interrupts_ignored():
                    net.stop_all()
    if error is not None:
        outcome.check("the demo ran to the end", False, error)
    ok = outcome.ok and error is None
    removed = temporary and ok and not kept
    result = summary(
        outcome, root=str(root), kept=kept, duration_s=time.monotonic() - started,
        nodes={n.id: {"pid": n.pid, "running": n.running(), "config": str(n.config),
                      "log": str(n.log), "client_url": n.client_url,
                      "federation_url": n.federation_url} for n in net.nodes.values()},
        officers={o.id: {"name": o.spec.name, "node": o.spec.node, "keystore": str(o.path),
                         "signing_key_id": o.signing_key_id} for o in net.officers.values()},
        pids=net.pids, error=error, commands=net.commands() if kept else [])
    result["dir_removed"] = removed
    result["traceback"] = trace
    if removed:
        shutil.rmtree(root, ignore_errors=True)
    code = EXIT_INTERRUPTED if interrupted else EXIT_OK if ok else EXIT_FAILED
    return Result(outcome, result, code)
