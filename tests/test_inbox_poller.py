"""The bench sink's inbox poller queries only after a commit, and misses none."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from liaison_net.store.observe import InboxPoller


def test_every_commit_of_another_connection_is_seen_and_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as node:
        node.execute("PRAGMA journal_mode=WAL")
        node.execute("CREATE TABLE inbox (seq INTEGER PRIMARY KEY, officer TEXT, "
                     "envelope_id BLOB)")
        poller = InboxPoller(path, "be/desk", limit=2)
        try:
            assert poller.poll() == []
            for seq in range(1, 4):  # one commit each; polled between them
                node.execute("INSERT INTO inbox VALUES (?, ?, ?)",
                             (seq, "be/desk", bytes([seq])))
                assert poller.poll() == [bytes([seq])]
                assert poller.poll() == []  # nothing committed since: not queried again
            node.execute("INSERT INTO inbox VALUES (4, 'be/other', x'04')")
            assert poller.poll() == []  # another officer's row
            node.executemany("INSERT INTO inbox VALUES (?, 'be/desk', ?)",
                             [(seq, bytes([seq])) for seq in range(5, 10)])
            # More than a page in one commit: read page by page, though the version
            # stands still after the first.
            pages = [poller.poll() for _ in range(4)]
            assert pages == [[b"\x05", b"\x06"], [b"\x07", b"\x08"], [b"\x09"], []]
        finally:
            poller.close()
