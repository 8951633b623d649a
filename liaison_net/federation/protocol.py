"""Node-to-node messages: transactions of envelopes, directory pushes, and their answers.

All bodies are canonical msgpack. The transaction id lets a receiver log retries; safety
against replays does not depend on it, because every envelope is deduplicated by its id.
"""

from __future__ import annotations

TRANSACTION_PATH = "/fed/v1/transactions"
DIRECTORY_PATH = "/fed/v1/directory"
REVOCATIONS_PATH = "/fed/v1/revocations"
MAX_TRANSACTION_ENVELOPES = 1024
MAX_DIRECTORY_CARDS = 500
MAX_REVOCATIONS = 100

TRANSACTION_FIELDS = {"origin", "txn", "envelopes"}
DIRECTORY_FIELDS = {"origin", "node_cert", "cards"}
REVOCATION_FIELDS = {"origin", "statements"}

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REFUSED = "refused"

#: Refusals a sender should retry rather than record as final: the receiver may simply not
#: know yet what the sender knows (a card still on its way, a storage hiccup).
RETRYABLE_CODES = frozenset({"unknown_key", "not_found", "unavailable", "node_fault",
                             "rate_limited"})
