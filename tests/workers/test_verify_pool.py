"""Verification workers as real processes, without a node: they verify exactly as the node
does; a worker killed under load loses nothing and is replaced; a worker that answers with
a malformed frame, or with another envelope, changes nothing and is dropped; a worker fed a
malformed frame exits with ``bad_frame``; a worker whose node is gone exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from liaison_net import errors
from liaison_net.core import crypto, sealing
from liaison_net.core.envelope import Kind, Precedence, read_frame
from liaison_net.core.limits import DEFAULT_LIMITS
from liaison_net.core.ownership import OwnershipTag
from liaison_net.supervisor import RestartPolicy, Supervisor
from liaison_net.workers import framing
from liaison_net.workers.verify_pool import BULK_MIN, WORKER_COMMAND, VerifyPool, _answers
from tests.waits import PATIENCE_S

SENDER = "nl/jdevries"
NOW = 1_790_000_000_000
FAST_RESTARTS = RestartPolicy(base_s=0.05, max_s=0.2, intensity=100, period_s=600)


def _tag() -> OwnershipTag:
    from tests.integration.officers import benelux_tag
    return benelux_tag("nl")


def _envelopes(key: crypto.SigningKeyPair, n: int) -> list[bytes]:
    to = [sealing.RecipientKey("be/mpeeters", crypto.generate_encryption_key().public)]
    return [sealing.seal(sender=SENDER, sender_key=key, recipients=to, tag=_tag(),
                         plaintext=f"alert {i}".encode(), now=NOW, expires=NOW + 3_600_000,
                         kind=Kind.MESSAGE, precedence=Precedence.ROUTINE).to_bytes()
            for i in range(n)]


def _tampered(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])  # the last byte of the signature or body


async def _until(condition: object, what: str) -> None:
    async with asyncio.timeout(PATIENCE_S):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


class Running:
    """A pool whose slots run under a real ``Supervisor`` (restarts with backoff)."""

    def __init__(self, pool: VerifyPool) -> None:
        self.pool = pool
        self.supervisor = Supervisor(policy=FAST_RESTARTS)
        for slot in range(pool.slots):
            self.supervisor.add(f"verify-worker-{slot}",
                                lambda slot=slot: pool.run_slot(slot))  # type: ignore[misc]

    def restarts(self) -> int:
        return sum(c.restarts for c in self.supervisor.children.values())


@contextlib.asynccontextmanager
async def running(pool: VerifyPool, *, started: bool = True) -> AsyncIterator[Running]:
    """The pool's slots supervised for the block, stopped (workers and all) after it;
    ``started``: their workers started first, as after a node's first bulk batch."""
    run = Running(pool)
    tasks = [asyncio.ensure_future(run.supervisor.supervise(child))
             for child in run.supervisor.children.values()]
    try:
        if started:
            pool.wanted()
            await _until(lambda: len(pool.pids()) == pool.slots, "the workers to start")
        yield run
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pool.pids() == []


def _pool(slots: int = 2, command: Sequence[str] = WORKER_COMMAND,
          **kwargs: float | int) -> VerifyPool:
    return VerifyPool(slots=slots, limits=DEFAULT_LIMITS, command=command,
                      **kwargs)  # type: ignore[arg-type]


async def _verify_all(pool: VerifyPool, raws: list[bytes],
                      signer: sealing.SignerKey) -> list[object]:
    """One batch, as a federation transaction or a batch submit hands it over."""
    return list(await pool.verify_many([(read_frame(raw), signer) for raw in raws]))


def _in_process(raws: list[bytes], signer: sealing.SignerKey) -> list[object]:
    out: list[object] = []
    for raw in raws:
        try:
            out.append(sealing.verify_frame(read_frame(raw), signer, now=None))
        except errors.LiaisonError as exc:
            out.append(exc)
    return out


def _same(got: list[object], expected: list[object]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        if isinstance(e, errors.LiaisonError):
            assert type(g) is type(e) and g.code == e.code  # type: ignore[attr-defined]
        else:
            assert g == e  # the same header, body, bytes and signature


@pytest.fixture(scope="module")
def key() -> crypto.SigningKeyPair:
    return crypto.generate_signing_key()


@pytest.fixture(scope="module")
def raws(key: crypto.SigningKeyPair) -> list[bytes]:
    return _envelopes(key, 400)


async def test_workers_verify_exactly_as_the_node_does(key: crypto.SigningKeyPair,
                                                       raws: list[bytes]) -> None:
    signer = sealing.SignerKey(SENDER, key.public)
    mixed = [_tampered(r) if i % 7 == 3 else r for i, r in enumerate(raws)]
    wrong_owner = sealing.SignerKey("nl/other", key.public)
    pool = _pool()
    async with running(pool) as run:
        _same(await _verify_all(pool, mixed, signer), _in_process(mixed, signer))
        # A key that belongs to someone else: refused as the node refuses it, here.
        _same(await _verify_all(pool, raws[:BULK_MIN], wrong_owner),
              _in_process(raws[:BULK_MIN], wrong_owner))
        assert pool.by_workers == len(mixed) - len(mixed[3::7])
        assert run.restarts() == 0


async def test_a_worker_killed_under_load_loses_nothing_and_is_replaced(
        key: crypto.SigningKeyPair, raws: list[bytes]) -> None:
    signer = sealing.SignerKey(SENDER, key.public)
    pool = _pool()
    async with running(pool) as run:
        victim = pool.pids()[0]
        load = asyncio.ensure_future(_verify_all(pool, raws * 5, signer))
        await _until(lambda: pool.by_workers > 0, "the first answers")
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(PATIENCE_S):
            _same(await load, _in_process(raws * 5, signer))
        await _until(lambda: len(pool.pids()) == 2 and victim not in pool.pids(),
                     "a new worker in the killed one's slot")
        assert run.restarts() == 1
        before = pool.by_workers
        _same(await _verify_all(pool, raws[:50], signer), _in_process(raws[:50], signer))
        assert pool.by_workers == before + 50  # the new worker works


async def test_only_bulk_goes_to_a_worker_one_frame_a_batch_started_at_the_first(
        key: crypto.SigningKeyPair, raws: list[bytes]) -> None:
    """Fewer than BULK_MIN envelopes are verified here, and start no worker; the first
    bulk batch starts one (verified here meanwhile); later ones are one frame each."""
    signer = sealing.SignerKey(SENDER, key.public)
    pool = _pool(slots=1)
    async with running(pool, started=False):
        small = raws[:BULK_MIN - 1]
        _same(await _verify_all(pool, small, signer), _in_process(small, signer))
        await asyncio.sleep(0)
        assert pool.pids() == [] and pool.here == len(small) and pool.frames == 0
        bulk = raws[:BULK_MIN]
        _same(await _verify_all(pool, bulk, signer), _in_process(bulk, signer))
        await _until(lambda: len(pool.pids()) == 1, "the worker the first bulk batch wants")
        for n in (BULK_MIN, 40, framing.MAX_ITEMS):
            frames, by_workers = pool.frames, pool.by_workers
            _same(await _verify_all(pool, raws[:n], signer), _in_process(raws[:n], signer))
            assert (pool.frames - frames, pool.by_workers - by_workers) == (1, n)
        # A single envelope stays here even with a worker live.
        _same(await _verify_all(pool, raws[:1], signer), _in_process(raws[:1], signer))
        assert pool.by_workers == BULK_MIN + 40 + framing.MAX_ITEMS


async def test_a_mixed_batch_answers_as_in_process_item_by_item(
        key: crypto.SigningKeyPair, raws: list[bytes]) -> None:
    """Tampered, signed by another key, another owner's key, good: each item's envelope or
    typed refusal is the node's own, whether the batch went to a worker or not."""
    signer = sealing.SignerKey(SENDER, key.public)
    other = _envelopes(crypto.generate_signing_key(), 2)
    work = [(read_frame(raws[0]), signer), (read_frame(_tampered(raws[1])), signer),
            (read_frame(other[0]), signer), (read_frame(raws[2]), signer),
            (read_frame(raws[3]), sealing.SignerKey("nl/other", key.public)),
            (read_frame(raws[4]), None)]
    work += [(read_frame(_tampered(r)), signer) for r in raws[5:8]] + [
        (read_frame(r), signer) for r in raws[8:12]]
    expected = []
    for frame, who in work:
        try:
            expected.append(sealing.verify_frame(frame, who, now=None))
        except errors.LiaisonError as exc:
            expected.append(exc)
    assert sum(isinstance(e, errors.LiaisonError) for e in expected) == 7
    without = _pool(slots=0)
    _same(list(await without.verify_many(work)), expected)
    pool = _pool(slots=1)
    async with running(pool):
        _same(list(await pool.verify_many(work)), expected)
        assert pool.frames == 1 and pool.by_workers == 6  # the refused verified again here


async def test_past_its_in_flight_bound_a_worker_is_not_sent_more(
        key: crypto.SigningKeyPair, raws: list[bytes]) -> None:
    """What waits for one worker is bounded: the rest is verified here, not queued."""
    signer = sealing.SignerKey(SENDER, key.public)
    pool = _pool(slots=1, max_in_flight=10)
    async with running(pool):
        _same(await _verify_all(pool, raws[:100], signer), _in_process(raws[:100], signer))
        assert pool.by_workers == 10 and pool.here == 90


#: A worker that answers its first request with ``ANSWER`` (a frame built by the test).
FAKE_WORKER = textwrap.dedent("""
    import sys
    from liaison_net.workers import framing
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    framing.read_blocking(inp)  # the limits
    seq, items = framing.parse_request(framing.read_blocking(inp))
    out.write(ANSWER(seq, items)); out.flush()
    sys.stdin.buffer.read()  # then wait for the node to close our stdin
""")

BAD_ANSWERS = {
    "not msgpack": "lambda seq, items: b'\\\\x00\\\\x00\\\\x00\\\\x03\\\\xc1\\\\xc1\\\\xc1'",
    "a length above the limit": "lambda seq, items: b'\\\\xff\\\\xff\\\\xff\\\\xff'",
    "an answer to no request": "lambda seq, items: framing.encode([seq + 1000, b''])",
    "a pickle of something else": (
        "lambda seq, items: framing.encode([seq, __import__('pickle').dumps("
        "[__import__('collections').OrderedDict()] * len(items))])"),
    "another envelope's answer": (
        "lambda seq, items: framing.encode([seq, __import__('pickle').dumps("
        "list(reversed([__import__('liaison_net.workers.verify_worker', fromlist=['x'])"
        ".verify_one(r, p, k, __import__('liaison_net.core.limits', fromlist=['x'])"
        ".DEFAULT_LIMITS) for r, p, k in items])))])"),
    "the stream ends mid-frame": "lambda seq, items: b'\\\\x00\\\\x00\\\\x01\\\\x00abc'",
}


@pytest.mark.parametrize("answer", sorted(BAD_ANSWERS))
async def test_a_malformed_answer_changes_nothing_and_the_node_goes_on(
        key: crypto.SigningKeyPair, raws: list[bytes], answer: str) -> None:
    signer = sealing.SignerKey(SENDER, key.public)
    script = FAKE_WORKER.replace("ANSWER(", f"({BAD_ANSWERS[answer]})(")
    if answer == "the stream ends mid-frame":
        script = script.replace("sys.stdin.buffer.read()", "sys.exit(0)")
    pool = _pool(slots=1, command=(sys.executable, "-c", script), bulk_min=2)
    async with running(pool) as run:
        batch = raws[:2]  # two different envelopes: swapped answers do not match
        _same(await _verify_all(pool, batch, signer), _in_process(batch, signer))
        assert pool.by_workers == 0 and pool.here == len(batch)
        await _until(lambda: run.restarts() >= 1,
                     "the bad worker to be dropped")


async def test_a_worker_that_does_not_answer_in_time_is_dropped(
        key: crypto.SigningKeyPair, raws: list[bytes]) -> None:
    signer = sealing.SignerKey(SENDER, key.public)
    silent = FAKE_WORKER.replace("out.write(ANSWER(seq, items)); out.flush()", "")
    pool = _pool(slots=1, command=(sys.executable, "-c", silent), answer_timeout_s=0.5,
                 bulk_min=3)
    async with running(pool) as run:
        async with asyncio.timeout(PATIENCE_S):
            _same(await _verify_all(pool, raws[:3], signer), _in_process(raws[:3], signer))
        assert pool.here == 3
        await _until(lambda: run.restarts() >= 1, "the silent worker to be dropped")


class _Touch:
    """A pickle that, if rebuilt without the core-only rule, creates a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.path,))


def test_an_answer_rebuilds_core_classes_only(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    with pytest.raises(errors.BadFrame, match="not a class of the core"):
        _answers(pickle.dumps([_Touch(planted)]), 1)
    assert not planted.exists()


def _global(module: str, name: str) -> bytes:
    """Protocol-4 opcodes that push ``module.name`` (as find_class resolves it)."""
    return b"".join(b"\x8c" + bytes([len(s)]) + s for s in (module.encode(), name.encode())) \
        + b"\x93"


@pytest.mark.parametrize(("module", "name"), [
    ("liaison_net.core.envelope", "__builtins__.get"),  # the builtins' dict: eval
    ("liaison_net.core.envelope", "Header.__init__"),  # a dotted path to a function
    ("liaison_net.core.envelope", "read_frame"),  # a core function, not a class
])
def test_an_answer_reaches_no_callable_through_a_core_module(
        tmp_path: Path, module: str, name: str) -> None:
    planted = tmp_path / "planted"
    text = f"open({str(planted)!r}, 'w').close()"
    # find_class(module, name)("eval")(text): eval of ``text``, if ``name`` reached eval.
    blob = (b"\x80\x04" + _global(module, name) + b"\x8c\x04eval\x85R"
            + b"\x8c" + bytes([len(text)]) + text.encode() + b"\x85R.")
    with pytest.raises(errors.BadFrame, match="not a class of the core"):
        _answers(blob, 1)
    assert not planted.exists()


def _worker(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(WORKER_COMMAND, input=stdin, capture_output=True, timeout=PATIENCE_S)


@pytest.mark.parametrize("frames", [
    b"\x00\x00\x00\x02\xc1\xc1",  # not msgpack
    b"\xff\xff\xff\xff",  # a length above the limit
    framing.encode({"limits": {"max_header_bytes": -1}}),  # limits out of range
    framing.encode({"limits": {}}) + framing.encode([1, []]),  # an empty request
    framing.encode({"limits": {}}) + framing.encode([1, [[b"x", "nl/x"]]]),  # a short item
    framing.encode({"limits": {}}) + b"\x00\x00\x00\x10abc",  # the stream ends mid-frame
])
def test_a_worker_fed_a_malformed_frame_exits_with_bad_frame(frames: bytes) -> None:
    done = _worker(frames)
    assert done.returncode == 3, done.stderr
    assert b"bad_frame" in done.stderr and done.stdout == b""


def test_a_worker_whose_node_is_gone_exits(key: crypto.SigningKeyPair,
                                           raws: list[bytes]) -> None:
    """The node's end of the pipe closes when it stops or dies: the worker answers what it
    was asked, then exits 0 (no orphan)."""
    done = _worker(framing.encode({"limits": {}})
                   + framing.request(7, [(raws[0], SENDER, key.public)]))
    assert done.returncode == 0, done.stderr
    n = framing.frame_length(done.stdout[:4])
    seq, blob = framing.parse_answer(framing.decode(done.stdout[4:4 + n]))
    assert seq == 7 and len(done.stdout) == 4 + n and blob


def test_frames_keep_their_limits() -> None:
    with pytest.raises(errors.BadFrame):
        framing.frame_length(b"\x00\x80\x00\x01")  # 8 MiB + 1
    with pytest.raises(errors.BadFrame):
        framing.decode(framing.encode([1, b""])[4:] + b"\x00")  # trailing bytes
    with pytest.raises(errors.BadFrame):
        framing.request(1, [(b"x", "nl/x", b"k")] * (framing.MAX_ITEMS + 1))
    with pytest.raises(errors.BadFrame):
        framing.parse_answer([1, [b"x"]])
