"""Fuzz the envelope decoder: read_frame, verify_frame, decode_header and decode_body.

"Verify before parse" means unsigned bytes never reach ``decode_header``; a fuzzer feeding
raw frames would therefore almost never get past the signature. So the input has modes
(first byte, see ``fuzz.seeds``):

* raw: the bytes are a wire frame, verified as a node verifies one; a spy checks that
  ``decode_header`` only ever sees header bytes whose signature verified;
* signed: the bytes are header and body, which the harness really signs with the seed
  signer's key, so mutated headers reach the strict header and body decoders;
* direct: ``decode_header`` and ``decode_body`` on the bytes as they are (they must be total
  even though only signed bytes reach them).

Whatever decodes must re-encode to the exact bytes it came from (canonical form: no second
encoding of the same envelope is accepted).
"""

from __future__ import annotations

import contextlib
import struct
import sys

import atheris

# Instrument liaison_net only when running as the fuzzer; imported by pytest it stays plain.
with (atheris.instrument_imports(include=["liaison_net"]) if __name__ == "__main__"
      else contextlib.nullcontext()):
    from fuzz import seeds
    from liaison_net.core import codec, crypto, sealing
    from liaison_net.core.envelope import (
        Envelope,
        Header,
        decode_body,
        decode_header,
        encode_frame,
        read_frame,
        signed_message,
    )
    from liaison_net.core.limits import DEFAULT_LIMITS, Limits
    from liaison_net.errors import BadSignature, LiaisonError

_SPIED = "decode_header"


def _verify_raw(raw: bytes) -> None:
    """A node's path for bytes off the wire, with a spy on the header decoder."""
    seen: list[bytes] = []

    def spy(header_bytes: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
        seen.append(header_bytes)
        return decode_header(header_bytes, limits)

    setattr(sealing, _SPIED, spy)  # verify_frame looks decode_header up in its module
    try:
        env = sealing.verify(raw, seeds.lookup, now=seeds.NOW)
    except LiaisonError:
        env = None
    finally:
        setattr(sealing, _SPIED, decode_header)
    if seen:
        frame = read_frame(raw)
        assert seen == [frame.header_bytes]
        try:
            crypto.verify(seeds.SIGNER.public, frame.signed_message, frame.signature)
        except BadSignature as exc:
            raise AssertionError("unsigned header bytes reached decode_header") from exc
    if env is not None:
        _check_canonical(env)
        assert env.to_bytes() == raw, "a verified frame must re-encode to the bytes received"


def _verify_signed(rest: bytes) -> None:
    """Sign whatever header and body the fuzzer made, then verify as a node does."""
    if len(rest) < 2:
        return
    (length,) = struct.unpack(">H", rest[:2])
    header_bytes, body_bytes = rest[2:2 + length], rest[2 + length:]
    signature = crypto.sign(seeds.SIGNER, signed_message(header_bytes, body_bytes))
    raw = encode_frame(header_bytes, body_bytes, seeds.SIGNER.key_id, signature)
    for now in (seeds.NOW, None):
        try:
            env = sealing.verify(raw, seeds.lookup, now=now)
        except LiaisonError:
            continue
        assert env.header_bytes == header_bytes and env.body_bytes == body_bytes
        _check_canonical(env)


def _decode_direct(rest: bytes) -> None:
    if not rest:
        return
    recipients, raw = rest[0], rest[1:]
    with contextlib.suppress(LiaisonError):
        header = decode_header(raw)
        assert codec.pack(header.to_wire()) == raw, "header decoded from non-canonical bytes"
    with contextlib.suppress(LiaisonError):
        body = decode_body(raw, recipients)
        assert codec.pack(body.to_wire()) == raw, "body decoded from non-canonical bytes"


def _check_canonical(env: Envelope) -> None:
    assert codec.pack(env.header.to_wire()) == env.header_bytes, "non-canonical header accepted"
    assert codec.pack(env.body.to_wire()) == env.body_bytes, "non-canonical body accepted"


def test_one_input(data: bytes) -> None:
    """One fuzz input: a mode byte, then a raw frame, signed parts or decoder input."""
    if not data:
        return
    mode, rest = data[0] % seeds.ENVELOPE_MODES, data[1:]
    if mode == seeds.ENVELOPE_RAW:
        _verify_raw(rest)
    elif mode == seeds.ENVELOPE_SIGNED:
        _verify_signed(rest)
    else:
        _decode_direct(rest)


def main(argv: list[str] | None = None) -> None:
    """Run libFuzzer over ``test_one_input`` (argv: corpus dirs and -flags, as libFuzzer's)."""
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
