"""The order in which the suite's test files reach the pytest-xdist workers: longest first.

`make test` runs each file whole on one worker (`--dist loadfile`), and the workers take
files from one queue as they finish. Left to itself, xdist orders that queue by a file's
number of tests, which puts the files with one or two long tests (four nodes co-signing a
key change, the quick bench) last: every other worker has gone idle while one runs them.
Longest first (the classic greedy schedule) ends the run when the total work, shared out,
does; the last files handed out are the short ones.

A file's length is what `--durations` measured (``MEASURED_S``, seconds on the loaded
2-core machine, rounded; docs/testing.md "What it costs"); a file not listed is estimated
from what it runs. The figures only order the queue: a stale one costs minutes, never a
test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

#: Seconds a file took (setup, call and teardown of all its tests), the files of 15 s or
#: more: `pytest -n 4 --dist loadfile --junitxml` of the whole suite, 4 December 2026, with
#: the machine's load at 9 to 17 (so about three times a quiet machine's figures).
MEASURED_S: dict[str, float] = {
    "tests/integration/test_key_cosign.py": 609,
    "tests/integration/test_rotation.py": 491,
    "tests/integration/test_almanac.py": 419,
    "tests/integration/test_signals.py": 288,
    "tests/integration/test_node_workers.py": 219,
    "tests/integration/test_client_node_keys.py": 215,
    "tests/test_bench.py": 210,
    "tests/test_docs_commands.py": 207,
    "tests/integration/test_restriction_updates.py": 206,
    "tests/integration/test_evidence.py": 201,
    "tests/integration/test_cli_session_cache.py": 181,
    "tests/integration/test_audit_witness.py": 169,
    "tests/integration/test_forwarding.py": 164,
    "tests/postgres/test_bench_postgresql.py": 153,
    "tests/integration/test_desk_browser.py": 146,
    "tests/integration/test_admin_four_eyes.py": 141,
    "tests/postgres/test_pg_workers.py": 131,
    "tests/integration/test_art25_audit.py": 118,
    "tests/integration/test_cli_listings.py": 113,
    "tests/integration/test_four_eyes.py": 102,
    "tests/integration/test_expiry_and_audit.py": 100,
    "tests/integration/test_storage_faults.py": 94,
    "tests/core/test_codec_fastpath.py": 93,
    "tests/integration/test_hostile_input.py": 89,
    "tests/fuzz/test_fuzz_bounded.py": 79,
    "tests/integration/test_faults.py": 78,
    "tests/integration/test_chaos.py": 77,
    "tests/integration/test_retention.py": 76,
    "tests/integration/test_effects_crash.py": 75,
    "tests/test_peer_answers.py": 74,
    "tests/test_demo.py": 68,
    "tests/integration/test_operations.py": 68,
    "tests/integration/test_live_delivery.py": 64,
    "tests/integration/test_admin_socket.py": 63,
    "tests/integration/test_clock_skew.py": 60,
    "tests/integration/test_node_startup.py": 58,
    "tests/integration/test_desk_security.py": 54,
    "tests/integration/test_requests.py": 51,
    "tests/integration/test_hostile_peer.py": 50,
    "tests/integration/test_tag_laundering.py": 45,
    "tests/integration/test_batch_submit.py": 38,
    "tests/postgres/test_chaos_postgresql.py": 37,
    "tests/test_officer_cli_offline.py": 36,
    "tests/integration/test_pipelined_delivery.py": 36,
    "tests/integration/test_odd_peer_answers.py": 36,
    "tests/integration/test_supervision.py": 35,
    "tests/integration/test_ownership_enforcement.py": 32,
    "tests/core/test_tagflow_property.py": 31,
    "tests/postgres/test_pg_restart_under_load.py": 30,
    "tests/integration/test_cli_errors.py": 30,
    "tests/integration/test_verify_workers.py": 25,
    "tests/integration/test_first_alert.py": 24,
    "tests/test_inflight.py": 23,
    "tests/postgres/test_node_on_postgresql.py": 22,
    "tests/test_architecture.py": 21,
    "tests/test_inbox_stream.py": 19,
    "tests/integration/test_revocation_abuse.py": 19,
    "tests/test_cli_startup.py": 18,
    "tests/workers/test_verify_pool.py": 16,
    "tests/postgres/test_store_contract.py": 16,
    "tests/core/test_no_wall_clock.py": 15,
    "tests/test_keystore.py": 15,
}

#: A file not in MEASURED_S: real node processes or a PostgreSQL cluster cost this much
#: at least; any other file this much per test.
NODES_FILE_S = 20.0
PER_TEST_S = 0.05
NODE_DIRS = ("tests/integration/", "tests/postgres/")


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...

    def get_closest_marker(self, name: str) -> object | None: ...


T = TypeVar("T", bound=_Item)


def file_of(nodeid: str) -> str:
    """The file of a test id, as xdist's loadfile groups them (``tests/x.py::test_y``)."""
    return nodeid.split("::", 1)[0]


def estimate_s(path: str, items: Sequence[_Item]) -> float:
    """How long the file ``path`` with tests ``items`` is expected to run."""
    if path in MEASURED_S:
        return MEASURED_S[path]
    runs_nodes = path.startswith(NODE_DIRS) or any(
        item.get_closest_marker("slow") is not None for item in items)
    return (NODES_FILE_S if runs_nodes else 0.0) + PER_TEST_S * len(items)


def longest_first(items: Iterable[T]) -> list[T]:
    """``items`` grouped by file, the longest file first; within a file, their order."""
    files: dict[str, list[T]] = {}
    for item in items:
        files.setdefault(file_of(item.nodeid), []).append(item)
    order = sorted(files, key=lambda path: (-estimate_s(path, files[path]), path))
    return [item for path in order for item in files[path]]
