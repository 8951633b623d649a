"""The node's start-up heap, set aside from the cyclic garbage collector once it serves.

A node imports aiohttp, cryptography, msgspec, structlog, click and its own modules, and
builds its apps, stores and caches before it takes a request: a few hundred thousand
objects that live as long as the process. CPython's full (generation 2) collection walks
every one of them each time it runs, and runs on whatever thread allocated last, holding
the GIL: at 1,000 envelopes/s the origin made two of them in a 10 s run, 33-35 ms each,
and the envelopes due meanwhile were the run's slowest 1 % (docs/performance.md, lane
paced16c). ``gc.freeze`` moves everything alive at that moment into the permanent
generation, which no collection walks; objects made later are collected as before. What is
frozen is never freed by the cycle collector (reference counting still frees it), so the
freeze comes once, at the end of start-up, after a full collection has removed the
garbage start-up left.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect start-up's garbage, then exempt every object alive now from later
    collections; the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
