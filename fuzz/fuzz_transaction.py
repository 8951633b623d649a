"""Fuzz the federation transaction decoder (``protocol.decode_transaction``).

The body of a peer's transaction POST is the first bytes a node decodes from another node;
a peer (or a stolen peer certificate) can send anything. ``decode_transaction`` is pure, so
the harness calls it directly, at the server's size limit. What decodes must be canonical
bytes (the reference decoding, ``codec.unpack``, accepts them) and decode to the values that
reference reads, covers and approvals included; each envelope in it then goes through
``read_frame`` as the server hands it on (verification of each envelope is the envelope
harness's job).
"""

from __future__ import annotations

import contextlib
import sys

import atheris

# Instrument liaison_net only when running as the fuzzer; imported by pytest it stays plain.
with (atheris.instrument_imports(include=["liaison_net"]) if __name__ == "__main__"
      else contextlib.nullcontext()):
    from liaison_net.core import codec
    from liaison_net.core.envelope import read_frame
    from liaison_net.errors import LiaisonError
    from liaison_net.federation.protocol import MAX_TRANSACTION_ENVELOPES, decode_transaction

#: A node accepts batch_size x max_envelope_bytes (capped at 256 MiB); any bound far above the
#: fuzzer's input sizes exercises the same code.
MAX_BODY = 64 * 1024 * 1024


def test_one_input(data: bytes) -> None:
    """One fuzz input: the raw body of a transaction POST."""
    try:
        txn = decode_transaction(data, max_bytes=MAX_BODY)
    except LiaisonError:
        return
    assert isinstance(txn.origin, str) and isinstance(txn.txn, bytes) and len(txn.txn) == 16
    assert len(txn.envelopes) <= MAX_TRANSACTION_ENVELOPES
    # What decoded is what the reference decoding reads (``codec.unpack``, which refuses any
    # non-canonical encoding), covers and approvals included.
    try:
        value = codec.unpack(data, what="transaction", max_bytes=MAX_BODY)
    except LiaisonError as exc:
        raise AssertionError("transaction decoded from non-canonical bytes") from exc
    assert (value["origin"], value["txn"], value["envelopes"]) == (
        txn.origin, txn.txn, txn.envelopes), "transaction decoded to other values"
    assert [[c, list(ids)] for c, ids in txn.covers.items()] == value.get("covers", []), (
        "covers decoded to other values")
    assert [[e, s] for e, s in txn.approvals.items()] == value.get("approvals", []), (
        "approvals decoded to other values")
    for raw in txn.envelopes:
        with contextlib.suppress(LiaisonError):
            read_frame(raw)


def main(argv: list[str] | None = None) -> None:
    """Run libFuzzer over ``test_one_input`` (argv: corpus dirs and -flags, as libFuzzer's)."""
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
