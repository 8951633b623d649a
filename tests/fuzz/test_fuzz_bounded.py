"""The fuzz harnesses run, execute inputs, accept their seeds, and do report a planted bug.

Each harness runs in a child process for a bounded number of executions (a few seconds).
The run only counts if it executed inputs, and the machinery is shown to fail on a decoder
with a planted bug, so a green bounded run cannot be vacuous.
"""

from __future__ import annotations

import dataclasses
import importlib
import random
import textwrap
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from fuzz import HARNESSES, fuzz_envelope, seeds
from fuzz.run import Result, minimize, run_harness, run_module
from liaison_net.core import codec, crypto, sealing
from liaison_net.core.envelope import (
    Kind,
    decode_body,
    decode_header,
    encode_frame,
    signed_message,
)
from liaison_net.core.ownership import OwnershipTag
from liaison_net.core.signals import SignalAnnex, SignalPayload
from liaison_net.errors import LiaisonError
from liaison_net.federation.protocol import decode_transaction

RUNS = 20_000


def _harness(name: str) -> ModuleType:
    return importlib.import_module(HARNESSES[name])


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_bounded_run_executes_and_finds_nothing(name: str, tmp_path: Path) -> None:
    result = run_harness(name, runs=RUNS, workdir=tmp_path)
    assert result.ok, result.summary() + "\n" + result.output[-3000:]
    assert result.executions >= RUNS, result.summary()
    assert result.coverage > 0, "nothing instrumented: the fuzzer would be blind"
    assert result.corpus_files >= len(seeds.SEEDS[name]())


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_every_seed_passes_the_harness(name: str) -> None:
    test_one_input = _harness(name).test_one_input
    for label, data in seeds.SEEDS[name]().items():
        try:
            test_one_input(data)
        except BaseException as exc:  # name the seed that failed
            raise AssertionError(f"seed {label} fails the {name} harness: {exc!r}") from exc


def test_envelope_seeds_are_real_signed_envelopes() -> None:
    envelopes = seeds.sample_envelopes()
    assert {e.header.kind for e in envelopes.values()} == set(Kind)
    for env in envelopes.values():
        verified = sealing.verify(env.to_bytes(), seeds.lookup, now=seeds.NOW)
        assert verified.header == env.header
        assert decode_header(env.header_bytes) == env.header
        assert decode_body(env.body_bytes, len(env.header.recipients)) == env.body


def test_edge_seeds_are_near_misses() -> None:
    """Each edge seed breaks one rule: verified as the harness would, it is refused (typed)."""
    all_seeds = seeds.envelope_seeds()
    edges = {k: v for k, v in all_seeds.items() if k.startswith("edge-")}
    assert len(edges) >= 20
    for name, data in edges.items():
        rest = data[1:]
        if data[0] == seeds.ENVELOPE_SIGNED:
            length = int.from_bytes(rest[:2], "big")
            header, body = rest[2:2 + length], rest[2 + length:]
            signature = crypto.sign(seeds.SIGNER, signed_message(header, body))
            rest = encode_frame(header, body, seeds.SIGNER.key_id, signature)
        with pytest.raises(LiaisonError):
            sealing.verify(rest, seeds.lookup, now=seeds.NOW)
            raise AssertionError(f"edge seed {name} verified")


def test_transaction_signal_and_tag_seeds_decode() -> None:
    for name, body in seeds.transaction_seeds().items():
        if name.startswith("edge-"):  # near misses, refused on purpose
            with pytest.raises(LiaisonError):
                decode_transaction(body, max_bytes=1 << 24)
        else:
            decode_transaction(body, max_bytes=1 << 24)
    for name, payload in seeds.sample_payloads().items():
        assert SignalPayload.decode(payload.encode()) == payload, name
    for name, annex in seeds.sample_annexes().items():
        wire = codec.unpack(codec.pack(annex.to_wire()), what="annex", max_bytes=1 << 14)
        assert SignalAnnex.from_wire(wire) == annex, name
    for name, tag in seeds.sample_tags().items():
        wire = codec.unpack(codec.pack(tag.to_wire()), what="tag", max_bytes=1 << 14)
        assert OwnershipTag.from_wire(wire) == tag, name


_PLANTED = '''
"""A transaction decoder with a planted bug: it indexes the map before checking its shape."""
import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["liaison_net"]):
    from liaison_net.core import codec
    from liaison_net.errors import LiaisonError


@atheris.instrument_func
def broken_decode(body):
    value = codec.unpack(body, what="request", max_bytes=1 << 20)
    return value["origin"], value["txn"]  # KeyError / TypeError on a non-transaction


def test_one_input(data):
    with contextlib.suppress(LiaisonError):
        broken_decode(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
'''


def test_the_machinery_reports_a_planted_bug(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "planted_harness.py").write_text(textwrap.dedent(_PLANTED))
    result = run_module("planted_harness", seeds.transaction_seeds(), tmp_path / "work",
                        runs=200_000, extra_path=[tmp_path])
    assert not result.ok
    assert result.returncode != 0
    assert any("Uncaught Python exception" in f for f in result.findings), result.summary()
    assert "KeyError" in result.output or "TypeError" in result.output
    assert result.artifacts, "the crashing input must be kept"
    # The kept input is a real reproducer, and it minimizes to one that still fails.
    planted = importlib.import_module("planted_harness")
    crash = result.artifacts[0].read_bytes()
    small = minimize(planted.test_one_input, crash, budget=3000)
    assert len(small) <= len(crash)
    with pytest.raises((KeyError, TypeError)):
        planted.test_one_input(small)


def test_a_run_that_executed_nothing_fails(tmp_path: Path) -> None:
    (tmp_path / "idle_harness.py").write_text("print('not fuzzing')\n")
    result = run_module("idle_harness", {"x": b"x"}, tmp_path / "work", runs=10,
                        extra_path=[tmp_path])
    assert result.returncode == 0 and result.executions == 0
    assert not result.ok


def test_result_parsing_counts_executions() -> None:
    out = ("#1000\tDONE   cov: 42 ft: 99 corp: 7/1Kb lim: 4096 exec/s: 500 rss: 40Mb\n"
           "stat::number_of_executed_units: 1000\nstat::average_exec_per_sec:     500\n"
           "stat::new_units_added:          3\n")
    from fuzz.run import _parse

    result = Result("x", 0)
    _parse(result, out)
    assert (result.executions, result.exec_per_sec, result.coverage, result.features,
            result.new_units) == (1000, 500, 42, 99, 3)
    assert not result.findings


def test_the_envelope_harness_catches_parse_before_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: a verifier that skips the signature lets unsigned headers be decoded."""
    env = seeds.sample_envelopes()["message"]
    forged = env.header_bytes.replace(b"\xa8priority", b"\xa5flash")  # signature kept
    assert forged != env.header_bytes
    tampered = encode_frame(forged, env.body_bytes, seeds.SIGNER.key_id, env.signature)
    data = seeds.envelope_input(seeds.ENVELOPE_RAW, tampered)
    fuzz_envelope.test_one_input(data)  # the real verifier refuses it before decoding
    monkeypatch.setattr(sealing, "crypto", SimpleNamespace(verify=lambda *args: None))
    with pytest.raises(AssertionError, match="unsigned header bytes reached decode_header"):
        fuzz_envelope.test_one_input(data)


@pytest.mark.parametrize(
    ("table", "action", "column", "relaxed", "message"),
    [
        ("TLP_REACH", "FORWARD", "RED", "SHARE_WITH", "TLP:RED"),
        ("HANDLING_NEED", "EVIDENCE", "H3", "ALLOW", "H3 information"),
        ("TLP_REACH", "EVIDENCE", "AMBER_STRICT", "SHARE_WITH", "AMBER\\+STRICT"),
    ],
)
def test_the_policy_harness_catches_a_relaxed_table(
    monkeypatch: pytest.MonkeyPatch, table: str, action: str, column: str, relaxed: str,
    message: str,
) -> None:
    """Planted bug: one cell of a policy table relaxed; the harness invariants must notice."""
    from liaison_net.core import policy
    from liaison_net.core.ownership import Handling, Tlp

    cells = getattr(policy, table)[policy.Action[action]]
    key = Tlp[column] if column in Tlp.__members__ else Handling[column]
    value = (policy.Reach if table == "TLP_REACH" else policy.Need)[relaxed]
    monkeypatch.setitem(cells, key, value)
    by_action, plain = policy.compile_tables()  # the value-keyed copies decide_for reads
    monkeypatch.setattr(policy, "_BY_ACTION", by_action)
    monkeypatch.setattr(policy, "_PLAIN", plain)
    harness = _harness("policy")
    inputs = [*seeds.policy_seeds().values(),
              *(random.Random(i).randbytes(200) for i in range(3000))]
    with pytest.raises(AssertionError, match=message):
        for data in inputs:
            harness.test_one_input(data)


def test_the_policy_harness_catches_a_wrong_strictness_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: ``at_least_as_strict`` forgets the TLP axis, so relaxing TLP passes as a
    tightening; the monotonicity invariant must notice."""
    from liaison_net.core import ownership, policy

    real = ownership.at_least_as_strict

    def forgets_tlp(new: ownership.OwnershipTag, old: ownership.OwnershipTag) -> bool:
        return real(dataclasses.replace(new, tlp=old.tlp, community=old.community), old)

    harness = _harness("policy")
    monkeypatch.setattr(policy, "at_least_as_strict", forgets_tlp)
    monkeypatch.setattr(harness, "at_least_as_strict", forgets_tlp)
    inputs = [*seeds.policy_seeds().values(),
              *(random.Random(i).randbytes(300) for i in range(20_000))]
    with pytest.raises(AssertionError, match="stricter tag allows"):
        for data in inputs:
            harness.test_one_input(data)
