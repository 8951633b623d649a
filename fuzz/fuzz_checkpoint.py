"""Fuzz the audit checkpoint wire (``core.checkpoint``, ``federation.checkpoints``).

A peer's checkpoint offer is decoded by a witness, and its answer by the origin; both come
from a certified peer, which can send anything. Modes (first byte, modulo 3):

0. the rest is an offer body: ``decode_request`` at the route's size limit, then every
   checkpoint in it through ``claimed_node`` and ``verify_checkpoint``;
1. the rest is a checkpoint *body*: signed with the seed key, then verified, so the fuzzer
   reaches the field checks behind the signature; what verifies must re-encode exactly;
2. the rest is a witness's answer: ``decode_answer``.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with (atheris.instrument_imports(include=["liaison_net"]) if __name__ == "__main__"
      else contextlib.nullcontext()):
    from fuzz import seeds
    from liaison_net.core import checkpoint as cp
    from liaison_net.core import codec, crypto
    from liaison_net.errors import LiaisonError
    from liaison_net.federation.checkpoints import (
        MAX_REQUEST_BYTES,
        REQUEST_FIELDS,
        decode_answer,
        decode_request,
    )


def _checkpoint(raw: bytes) -> None:
    cp.claimed_node(raw)
    with contextlib.suppress(LiaisonError):
        signed = cp.verify_checkpoint(raw, seeds.SIGNER.public, node="nl")
        assert signed.checkpoint.body() == codec.unpack(raw, what="t", max_bytes=1 << 20)[0]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == seeds.CHECKPOINT_OFFER:
        try:
            fields = codec.exact_map("request", codec.unpack(
                rest, what="request", max_bytes=MAX_REQUEST_BYTES), REQUEST_FIELDS)
            request = decode_request(fields)
        except LiaisonError:
            return
        assert len(request.proofs) <= cp.MAX_PROOFS and len(request.seen) <= cp.MAX_SEEN
        for raw in [request.checkpoint, *request.seen]:
            _checkpoint(raw)
    elif mode == seeds.CHECKPOINT_SIGNED:
        raw = codec.pack([rest, crypto.sign(seeds.SIGNER, cp.CHECKPOINT_DOMAIN + rest)])
        try:
            signed = cp.verify_checkpoint(raw, seeds.SIGNER.public, node="nl")
        except LiaisonError:
            return
        assert signed.checkpoint.body() == rest, "checkpoint verified from non-canonical bytes"
    else:
        with contextlib.suppress(LiaisonError):
            decode_answer(rest)


def main(argv: list[str] | None = None) -> None:
    """Run libFuzzer over ``test_one_input`` (argv: corpus dirs and -flags, as libFuzzer's)."""
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
