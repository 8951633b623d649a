"""Coverage-guided fuzzing (atheris) of the decoders and the tag policy.

Not part of the installed product: run from a checkout with ``python -m fuzz <name>``
(see ``fuzz.run``). The contract every harness checks: for any input the code under test
returns a value or raises a ``liaison_net.errors.LiaisonError``; any other exception, and
any broken invariant (an ``AssertionError`` of the harness), is a finding.

This package must not import liaison_net at import time: a harness run as the fuzzer
instruments liaison_net as it imports it, which only works for modules not yet loaded.
"""

from __future__ import annotations

#: Harness name -> module, for ``python -m fuzz <name>``.
HARNESSES: dict[str, str] = {
    "envelope": "fuzz.fuzz_envelope",
    "transaction": "fuzz.fuzz_transaction",
    "signal": "fuzz.fuzz_signal",
    "policy": "fuzz.fuzz_policy",
    "checkpoint": "fuzz.fuzz_checkpoint",
}
