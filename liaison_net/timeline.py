"""A per-envelope wall-clock timeline, for measurement only (issue 16: the light load's tail).

Off unless the environment variable ``LIAISON_TIMELINE`` names a directory (set it for
``liaison bench``: its nodes and its sink inherit it, and each process started with it
calls ``start``). Then each process keeps,
in memory, up to ``MAX_MARKS`` marks ``(CLOCK_MONOTONIC ns, step, key)`` and writes them to
``DIR/<label>-<pid>.tsv`` when it exits (``flush``). CLOCK_MONOTONIC is one clock for
every process of a host, so the marks of the origin, the destination and the bench client
line up. A key is an envelope id (16 bytes, as hex) or empty for a node-wide event (a
commit, a drain pass, a GC pause). Nothing else is recorded: no plaintext, no key
material, no officer name.

Off, ``mark`` is one global read and a return; nothing is allocated or written.
``python -m liaison_net.bench.timeline_report DIR`` reads the files and compares the envelopes of
the median with the slowest ones.
"""

from __future__ import annotations

import atexit
import gc
import os
import stat
import time
from pathlib import Path
from typing import Any

ENV = "LIAISON_TIMELINE"
#: Marks kept per process: bounded memory whatever runs (about 160 bytes a mark with its
#: tuple and stamp, 65 MB when full: measured with tracemalloc, lane review16e).
MAX_MARKS = 400_000

_marks: list[tuple[int, str, bytes]] | None = None
_dir: Path | None = None
_label = "proc"
_gc_started = 0


def enabled() -> bool:
    return _marks is not None


def start(label: str) -> None:
    """Turn the timeline on if ``LIAISON_TIMELINE`` is set (once per process); ``label``
    names this process's file (a node id, "bench", "sink")."""
    global _marks, _dir, _label
    directory = os.environ.get(ENV)
    if not directory or _marks is not None:
        return
    _dir, _label, _marks = Path(directory), label, []
    gc.callbacks.append(_gc_pause)
    atexit.register(flush)


def mark(step: str, key: bytes = b"") -> None:
    """Record ``step`` for ``key`` (an envelope id; empty for a node-wide event) now."""
    marks = _marks
    if marks is not None and len(marks) < MAX_MARKS:
        marks.append((time.monotonic_ns(), step, key))


def mark_at(ns: int, step: str, key: bytes = b"") -> None:
    """``mark`` with a stamp taken earlier (``now``), when the key is known only later."""
    marks = _marks
    if marks is not None and len(marks) < MAX_MARKS:
        marks.append((ns, step, key))


def now() -> int:
    """The timeline's clock (CLOCK_MONOTONIC, ns)."""
    return time.monotonic_ns()


def _gc_pause(phase: str, info: dict[str, Any]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.monotonic_ns()
    else:
        mark_at(_gc_started, f"gc{info.get('generation', '?')}.start")
        mark("gc.stop")


def flush() -> None:
    """Write this process's marks (once; later marks are kept for a later call)."""
    global _marks
    if _marks is None or _dir is None or not _marks:
        return
    marks, _marks = _marks, []
    _dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = _dir / f"{_label}-{os.getpid()}.tsv"
    # Ids and times only, but of a police node's traffic: readable by its user alone. The
    # name is predictable (label, pid): a link planted there is not followed, and a file
    # someone else made there is not written (OSError: the marks are not written).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(f"timeline: {path} is not this user's own file; nothing written")
    with open(fd, "a", encoding="ascii") as out:
        out.writelines(f"{ns}\t{step}\t{key.hex()}\n" for ns, step, key in marks)
