"""The optional ``covers`` of a federation transaction (relayed batch evidence): bounded and
exactly shaped, or the whole request is refused; absent, the transaction is as before."""

from __future__ import annotations

from typing import Any

import pytest

from liaison_net.core import codec
from liaison_net.core.evidence_batch import MAX_BATCH_IDS
from liaison_net.errors import Malformed
from liaison_net.federation.protocol import decode_transaction, encode_covers

CARRIER, A, B = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16


def _body(**extra: Any) -> bytes:
    return codec.pack({"origin": "be", "txn": b"t" * 16, "envelopes": [b"x", b"y"], **extra})


def test_covers_absent_or_well_formed_decode() -> None:
    assert decode_transaction(_body(), max_bytes=1 << 20).covers == {}
    body = _body(covers=encode_covers({CARRIER: [A, B], A: [B]}))
    assert decode_transaction(body, max_bytes=1 << 20).covers == {CARRIER: (A, B), A: (B,)}


@pytest.mark.parametrize("covers", [
    "not a list",
    [[CARRIER, [A]], [A, [B]], [B, [A]]],  # more entries than envelopes
    [[CARRIER]],
    [[b"short", [A]]],
    [[CARRIER, []]],
    [[CARRIER, [b"short"]]],
    [[CARRIER, [A] * (MAX_BATCH_IDS + 1)]],
    [[CARRIER, [A]], [CARRIER, [B]]],  # one carrier twice
    [[CARRIER, A]],
])
def test_malformed_covers_refuse_the_request(covers: Any) -> None:
    with pytest.raises(Malformed, match="covers"):
        decode_transaction(_body(covers=covers), max_bytes=1 << 20)


def test_other_unknown_fields_are_still_refused() -> None:
    with pytest.raises(Malformed, match="unknown field"):
        decode_transaction(_body(covers=[], extra=1), max_bytes=1 << 20)
