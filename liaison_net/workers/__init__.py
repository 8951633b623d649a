"""Work a node does in processes of its own beside the single writer process.

Today one job: verifying envelopes (``verify_pool``, ``verify_worker``), the largest piece
of a node's CPU that needs no database state (docs/performance.md, "More than one core").
The writer process still looks every signer key up, runs every check that needs the store,
commits with ``synchronous=FULL`` and only then answers "accepted".
"""
