"""No module reads the wall clock behind the node's back (issue 13, item 5).

The node and the CLI each build one ``Clock`` (liaison_net/clock.py) at their edge and
pass it down, so a drill offset reaches every timestamp and a test can hold time still.
This walks the package's syntax trees: outside clock.py, nobody calls ``time.time``,
``time.time_ns`` or ``datetime.now``/``utcnow``, and nobody imports a module-level
``now_ms``/``now``/``OFFSET_MS`` from the clock module. Monotonic timers (timeouts, rate
limits) are not the wall clock and stay allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import liaison_net

PACKAGE = Path(liaison_net.__file__).parent

#: Where reading the host clock directly is right, and why. Keep it short.
ALLOWED: dict[str, str] = {
    "clock.py": "the one place that reads the wall clock",
    # Drills run beside the nodes, never inside one (the node imports none of them), and
    # time deliveries across processes with the host clock on purpose.
    "bench/": "latency measured across processes on the host clock",
    "chaos/": "a drill beside the nodes; its traffic dates envelopes by the host",
    "demo/": "a drill beside the nodes, acting as officers on the host clock",
}

WALL_CALLS = {("time", "time"), ("time", "time_ns"), ("datetime", "now"),
              ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
GLOBAL_CLOCK_NAMES = {"now_ms", "now", "OFFSET_MS"}
CLOCK_MODULES = {"liaison_net.clock", "liaison_net.http_common"}


def _allowed(relative: str) -> bool:
    return any(relative == key or (key.endswith("/") and relative.startswith(key))
               for key in ALLOWED)


def wall_clock_reads(source: str) -> list[str]:
    """Each direct wall-clock read or global clock import in ``source``, as ``line: what``."""
    found = []
    tree = ast.parse(source)
    # `from liaison_net import clock` and then `clock.now_ms()`: the module, not a Clock.
    module_alias = {alias.asname or alias.name for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module == "liaison_net"
                    for alias in node.names if alias.name == "clock"}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_alias and node.attr in GLOBAL_CLOCK_NAMES):
            found.append(f"{node.lineno}: clock module's {node.attr}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in WALL_CALLS):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            names = {alias.name for alias in node.names}
            if node.module == "time" and names & {"time", "time_ns"}:
                found.append(f"{node.lineno}: from time import {sorted(names)}")
            if node.module in CLOCK_MODULES and names & GLOBAL_CLOCK_NAMES:
                found.append(f"{node.lineno}: from {node.module} import "
                             f"{sorted(names & GLOBAL_CLOCK_NAMES)}")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def test_only_the_clock_module_reads_the_wall_clock() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if _allowed(relative):
            continue
        offenders += [f"{relative}:{hit}" for hit in wall_clock_reads(path.read_text())]
    assert not offenders, "read the injected Clock instead:\n" + "\n".join(offenders)


def test_the_check_sees_each_kind_of_read() -> None:
    source = ("import time\nfrom datetime import UTC, datetime\n"
              "from liaison_net.clock import now_ms\nfrom liaison_net.http_common import now_ms\n"
              "a = time.time()\nb = time.time_ns()\nc = datetime.now(UTC)\n"
              "d = time.monotonic()\nfrom liaison_net import clock\ne = clock.now_ms()\n"
              "def f(clock: object) -> None: ...\n")
    lines = [hit.split(":")[0] for hit in wall_clock_reads(source)]
    assert lines == ["3", "4", "5", "6", "7", "10"]


def test_the_allowlist_names_only_what_exists() -> None:
    for key in ALLOWED:
        assert (PACKAGE / key).exists(), key
