"""One verification worker: ``python -m liaison_net.workers.verify_worker``.

Started by the node's ``VerifyPool`` with its stdin and stdout as pipes to the node, and
nothing else: no database, no network, no secret key. It reads the node's ``Limits`` (the
first frame), then requests of up to 64 ``[raw, principal, public_key]`` items, and answers
each item, in order, with the verified envelope's signature, header and body or None, all
in one pickle per frame (``framing``). It runs the pure core's ``verify_frame``, the same
code the node runs in its own process without workers.

It ends when its stdin ends: the node closed it, or the node died (the kernel closes the
pipe), so a worker never outlives its node. A bad frame ends it with exit code 3 and one
line on stderr; the node then verifies that work itself and starts another worker.
"""

from __future__ import annotations

import pickle
import signal
import sys
from typing import IO

from liaison_net.core.envelope import Body, Header, read_frame
from liaison_net.core.limits import Limits
from liaison_net.core.sealing import SignerKey, verify_frame
from liaison_net.errors import BadFrame, LiaisonError
from liaison_net.workers import framing

EXIT_BAD_FRAME = 3


def _limits(hello: object) -> Limits:
    if not (isinstance(hello, dict) and set(hello) == {"limits"}
            and isinstance(hello["limits"], dict)):
        raise BadFrame("the first frame is {limits: {...}}")
    try:
        return Limits(**hello["limits"])
    except (TypeError, LiaisonError) as exc:
        raise BadFrame(f"the limits of the first frame are not valid: {exc}") from exc


def verify_one(raw: bytes, principal: str, public: bytes,
               limits: Limits) -> tuple[bytes, Header, Body] | None:
    """The verified envelope's signature (so the node can tell whose answer it is), decoded
    header and body (the node has its bytes already), or None when it does not verify (the
    node then verifies it itself and raises the exact refusal)."""
    try:
        envelope = verify_frame(read_frame(raw, limits), SignerKey(principal, public),
                                now=None, limits=limits)
    except LiaisonError:
        return None
    return envelope.signature, envelope.header, envelope.body


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer requests until ``inp`` ends; ``BadFrame`` propagates to ``main``."""
    limits = _limits(framing.read_blocking(inp))
    while (value := framing.read_blocking(inp)) is not None:
        seq, items = framing.parse_request(value)
        answers = [verify_one(raw, principal, public, limits) for raw, principal, public in items]
        out.write(framing.encode([seq, pickle.dumps(answers, protocol=5)]))
        out.flush()


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group: the node stops its workers
    # itself (closing their stdin), so a worker ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BadFrame as exc:
        print(f"verify_worker: {exc.code}: {exc.detail}", file=sys.stderr)
        return EXIT_BAD_FRAME
    except BrokenPipeError:
        return 0  # the node is gone
    return 0


if __name__ == "__main__":
    sys.exit(main())
