"""Fuzz the signal schema: the encrypted payload and the header annex.

A signal's payload is decoded by every duty desk that opens it, its annex by every node on
the way (to set the acknowledgement deadline and match pseudonyms); both come from another
country's officer. Mode byte (see ``fuzz.seeds``): payload bytes for
``SignalPayload.decode`` (decoder and validator), or annex bytes for
``SignalAnnex.from_wire``. What decodes must re-encode to the exact bytes it came from.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

# Instrument liaison_net only when running as the fuzzer; imported by pytest it stays plain.
with (atheris.instrument_imports(include=["liaison_net"]) if __name__ == "__main__"
      else contextlib.nullcontext()):
    from fuzz import seeds
    from liaison_net.core import codec
    from liaison_net.core.signals import SignalAnnex, SignalPayload
    from liaison_net.errors import LiaisonError

_MAX_ANNEX_BYTES = 16 * 1024  # the annex travels inside a header of at most this size


def _payload(raw: bytes) -> None:
    try:
        payload = SignalPayload.decode(raw)
    except LiaisonError:
        return
    assert payload.encode() == raw, "signal payload decoded from non-canonical bytes"


def _annex(raw: bytes) -> None:
    try:
        annex = SignalAnnex.from_wire(codec.unpack(raw, what="annex", max_bytes=_MAX_ANNEX_BYTES))
    except LiaisonError:
        return
    assert codec.pack(annex.to_wire()) == raw, "signal annex decoded from non-canonical bytes"


def test_one_input(data: bytes) -> None:
    """One fuzz input: a mode byte, then payload or annex bytes."""
    if not data:
        return
    if data[0] % seeds.SIGNAL_MODES == seeds.SIGNAL_PAYLOAD:
        _payload(data[1:])
    else:
        _annex(data[1:])


def main(argv: list[str] | None = None) -> None:
    """Run libFuzzer over ``test_one_input`` (argv: corpus dirs and -flags, as libFuzzer's)."""
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
