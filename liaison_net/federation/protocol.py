"""Node-to-node messages: transactions of envelopes, directory pushes, and their answers.

All bodies are canonical msgpack. The transaction id lets a receiver log retries; safety
against replays does not depend on it, because every envelope is deduplicated by its id.
"""

from __future__ import annotations

from dataclasses import dataclass

from liaison_net.core import codec
from liaison_net.errors import LimitExceeded, Malformed

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
#: know yet what the sender knows (a card still on its way, a storage hiccup, a full disk).
RETRYABLE_CODES = frozenset({"unknown_key", "not_found", "unavailable", "storage_full",
                             "node_fault", "rate_limited"})


@dataclass(frozen=True)
class Transaction:
    """A peer's batch of envelopes, checked for shape only: each envelope is verified later,
    on its own, before any of its bytes are decoded."""

    origin: str
    txn: bytes
    envelopes: list[bytes]


def decode_transaction(body: bytes, *, max_bytes: int) -> Transaction:
    """The body of a transaction POST; raises only typed ``Refused`` errors (fuzzed)."""
    fields = codec.exact_map("request", codec.unpack(body, what="request", max_bytes=max_bytes),
                             TRANSACTION_FIELDS)
    origin, txn, envelopes = fields["origin"], fields["txn"], fields["envelopes"]
    if not isinstance(origin, str):
        raise Malformed("origin must be a node id")
    if not isinstance(txn, bytes) or len(txn) != 16:
        raise Malformed("txn must be a 16-byte id")
    if not isinstance(envelopes, list) or not all(isinstance(e, bytes) for e in envelopes):
        raise Malformed("envelopes must be a list of byte strings")
    if len(envelopes) > MAX_TRANSACTION_ENVELOPES:
        raise LimitExceeded(f"at most {MAX_TRANSACTION_ENVELOPES} envelopes per transaction")
    return Transaction(origin, txn, envelopes)
