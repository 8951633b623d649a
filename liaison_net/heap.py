"""The node's heap and the cyclic garbage collector: start-up's objects set aside, and
young objects collected less often.

Reference counting frees almost everything a node makes per envelope the moment it is
done with; the cyclic collector only finds the few cycles left over. CPython starts a
young-generation collection each time 700 more containers have been made than freed, and a
node serving 1,000 envelopes/s crossed that 300-380 times in a 10 s run at the origin
(121-141 at the destination), 0.4-0.6 ms each on the event loop with the GIL held: 160-180 ms
of the origin's CPU per run, most of it walking objects that would have been freed by
reference counting a moment later. ``GEN0_THRESHOLD`` makes that 12 collections and
14 ms (docs/performance.md, lane paced16c); the older generations keep CPython's defaults,
counted in young collections as before. What it costs: up to that many more containers
alive before a collection, a few MB at most, and a young collection's walk up to that
long (2.5 ms the longest seen).

A node also imports aiohttp, cryptography, msgspec, structlog, click and its own modules,
and builds its apps, stores and caches before it takes a request: objects that live as
long as the process. ``gc.freeze`` moves everything alive once start-up is over into the
permanent generation, which no collection walks again. What is frozen is never freed by
the cycle collector (reference counting still frees it): start-up objects that end up in a
cycle later (a replaced TLS context, say) stay; so the freeze comes once, after a full
collection has removed the garbage start-up left.
"""

from __future__ import annotations

import gc

#: Net containers allocated before a young collection (CPython's default: 700).
GEN0_THRESHOLD = 7000


def settle_heap() -> int:
    """Collect start-up's garbage, exempt every object alive now from later collections,
    and collect the young generation every ``GEN0_THRESHOLD`` containers; the number of
    objects frozen."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
    return gc.get_freeze_count()
