"""The node's heap and the cyclic garbage collector: start-up's objects set aside, and
young objects collected less often.

Reference counting frees almost everything a node makes per envelope the moment it is
done with; the cyclic collector only finds the few cycles left over. CPython starts a
young-generation collection each time 700 more containers have been made than freed: at
1,000 envelopes/s the origin did 277-486 in a 10 s run (the destination 121-141),
0.3-0.9 ms each on the event loop with the GIL held, 106-240 ms of the origin's CPU a
run, walking objects reference counting would have freed a moment later.
``GEN0_THRESHOLD`` makes that 11-13 collections and 13-24 ms (docs/performance.md, lane
paced16c); the older generations keep CPython's defaults, counted in young collections as
before. Its price: up to that many more containers alive before a collection (peak RSS
+2.5-5.6 MB with 100,000 queued) and a young collection's walk up to that long (~3 ms).

A full (generation 2) collection walks every tracked object, and most of a node's are its
imports and what start-up built (aiohttp, cryptography, msgspec, structlog, its apps,
stores and caches), alive as long as the process: 26-35 ms per full collection at the
origin, twice a paced run, and the envelopes due meanwhile were that run's slowest 1 %.
``gc.freeze`` moves everything alive once start-up is over into the permanent generation,
which no collection walks again (full collections then took under 5 ms). What is frozen is
never freed by the cycle collector (reference counting still frees it): a start-up object
that ends up in a cycle later (a replaced TLS context, say) stays; so the freeze comes
once, after a full collection has removed the garbage start-up left.
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
