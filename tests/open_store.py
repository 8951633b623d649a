"""A node's store on a real SQLite file for one test, closed when the test ends, pass or
fail: the open / try / finally close every store test wrote again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from liaison_net.store.node_store import NodeStore


@asynccontextmanager
async def open_store(path: Path, node_id: str) -> AsyncIterator[NodeStore]:
    store = NodeStore(path, node_id)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
