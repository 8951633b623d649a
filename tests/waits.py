"""How long a test waits for a condition: one shared, generous bound.

A test waits for what the code under test does (a node listening, a card federating, a
stream closed) by polling a condition; the bound only turns a hang into a failure that
names what was awaited. It is far above what even a loaded 2-core machine running the
suite in parallel needs, so the machine's speed never decides a test. Limits under test
(a server's timeouts) are kept short in the test's config instead.
"""

from __future__ import annotations

PATIENCE_S = 120.0
