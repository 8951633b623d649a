"""A peer's answers, whatever they are, only ever become typed outcomes (issue 14, item 4).

``protocol.decode_transaction_answer`` and ``decode_revocations_answer`` are pure; the
sender's state of a peer (``PeerLink``) is pure too. A Hypothesis state machine plays an
arbitrary peer against them: any msgpack value, any bytes, and near-valid answers with one
field wrong. Every answer either decodes to outcomes that name the batch's own envelopes in
order, or raises ``Malformed`` (then the link backs off and audits at most once per spell);
nothing else ever escapes.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from liaison_net.core import codec
from liaison_net.core.delivery import BackoffPolicy
from liaison_net.errors import Malformed
from liaison_net.federation import protocol
from liaison_net.federation.sender import PeerLink

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=30) | st.binary(max_size=30))
msgpack_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20)
# Each field of a result: right half the time, anything the other half, so that answers
# with exactly one field wrong (the dangerous ones) are common.
statuses = st.sampled_from([protocol.ACCEPTED, protocol.DUPLICATE, protocol.REFUSED]) | \
    st.sampled_from(["", "ACCEPTED", "refused "]) | msgpack_values
codes = st.sampled_from([*sorted(protocol.KNOWN_CODES), "policy.share_with", ""]) | \
    st.text(max_size=12) | msgpack_values
details = st.just("") | st.text(max_size=50) | st.text(min_size=1001, max_size=1100) | \
    msgpack_values


def results(n: int) -> st.SearchStrategy[list[Any]]:
    one = st.tuples(statuses, codes, details).map(list) | \
        st.lists(st.one_of(statuses, codes, details), min_size=0, max_size=4)
    return st.lists(one, min_size=max(0, n - 1), max_size=n + 1)


VALID_RESULTS = [(protocol.ACCEPTED, "", ""), (protocol.DUPLICATE, "", ""),
                 (protocol.REFUSED, "storage_full", "disk full"),
                 (protocol.REFUSED, "forbidden", "not yours"),
                 (protocol.REFUSED, "policy.share_with", "")]


def pack_any(value: Any) -> bytes:
    """Any msgpack encoding, canonical or not (floats included)."""
    return bytes(msgpack.packb(value, use_bin_type=True))


def check_outcomes(outcomes: list[protocol.Outcome], batch: list[bytes]) -> None:
    assert [o.envelope_id for o in outcomes] == batch
    for o in outcomes:
        assert isinstance(o, protocol.Delivered | protocol.NotYet | protocol.RefusedForGood)
        if isinstance(o, protocol.NotYet):
            assert o.code in protocol.RETRYABLE_CODES
        if isinstance(o, protocol.RefusedForGood):
            assert isinstance(o.code, str) and o.code not in protocol.RETRYABLE_CODES
            assert isinstance(o.detail, str) and len(o.detail) <= protocol.MAX_DETAIL


class AnyPeer(RuleBasedStateMachine):
    """The sender's decoding and link state, against a peer that answers anything."""

    def __init__(self) -> None:
        super().__init__()
        self.link = PeerLink()
        self.backoff = BackoffPolicy(initial_s=1.0, maximum_s=60.0)
        self.now = 1_000_000
        self.batch: list[bytes] = [bytes([i]) * 16 for i in range(3)]
        self.audits = 0
        self.spells = 0
        self.failing = False
        self.failed_at = 0

    def _answered(self, payload: bytes, rand: float) -> None:
        try:
            outcomes = protocol.decode_transaction_answer(payload, self.batch)
        except Malformed:
            self._failed(rand, malformed=True)
        else:
            check_outcomes(outcomes, self.batch)
            if any(isinstance(o, protocol.NotYet) for o in outcomes):
                self._failed(rand, malformed=False)  # the sender raises Unavailable
            else:
                self.link.recovered()
                self.failing = False

    def _failed(self, rand: float, *, malformed: bool) -> None:
        if not self.failing:
            self.spells += 1
            self.failing = True
        self.failed_at = self.now
        delay, audit = self.link.failed(self.backoff, self.now, rand, malformed=malformed)
        assert 0 <= delay <= self.backoff.maximum_s
        self.audits += audit

    @rule(size=st.integers(1, 4))
    def new_batch(self, size: int) -> None:
        self.batch = [bytes([len(self.batch) + i]) * 16 for i in range(size)]

    @rule(value=msgpack_values, rand=st.floats(0, 0.999))
    def any_value(self, value: Any, rand: float) -> None:
        self._answered(pack_any(value), rand)

    @rule(value=msgpack_values, rand=st.floats(0, 0.999))
    def any_value_as_results(self, value: Any, rand: float) -> None:
        self._answered(pack_any({"results": value}), rand)

    @rule(data=st.data(), rand=st.floats(0, 0.999))
    def near_valid(self, data: st.DataObject, rand: float) -> None:
        self._answered(pack_any({"results": data.draw(results(len(self.batch)))}), rand)

    @rule(data=st.data(), rand=st.floats(0, 0.999))
    def one_field_wrong(self, data: st.DataObject, rand: float) -> None:
        """A valid answer for the batch with one field of one result replaced by anything."""
        good = data.draw(st.lists(st.sampled_from(VALID_RESULTS), min_size=len(self.batch),
                                  max_size=len(self.batch)))
        answer = [list(r) for r in good]
        which = data.draw(st.integers(0, len(answer) - 1))
        answer[which][data.draw(st.integers(0, 2))] = data.draw(msgpack_values | codes)
        self._answered(pack_any({"results": answer}), rand)

    @rule(raw=st.binary(max_size=64), rand=st.floats(0, 0.999))
    def any_bytes(self, raw: bytes, rand: float) -> None:
        self._answered(raw, rand)

    @rule(rand=st.floats(0, 0.999))
    def unreachable(self, rand: float) -> None:
        self._failed(rand, malformed=False)

    @rule()
    def valid(self) -> None:
        self._answered(codec.pack({"results": [[protocol.ACCEPTED, "", ""]] * len(self.batch)}),
                       0.5)
        assert self.link.attempts == 0 and not self.failing

    @rule(ms=st.integers(0, 120_000))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @invariant()
    def bounded_state(self) -> None:
        assert self.link.attempts >= 0
        assert self.audits <= self.spells  # at most one malformed-answer entry per spell
        if self.link.attempts:  # backing off: never scheduled before the failure
            assert self.link.next_attempt >= self.failed_at
        else:
            assert self.link.next_attempt == 0


TestAnyPeer = AnyPeer.TestCase
TestAnyPeer.settings = settings(max_examples=300, stateful_step_count=30, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow])


@given(value=msgpack_values, count=st.integers(0, 5))
@settings(max_examples=500, deadline=None)
def test_revocation_answers_are_flags_or_malformed(value: Any, count: int) -> None:
    """Any answer to a revocation push: one done/not-done flag per statement, or Malformed."""
    for payload in (pack_any(value), pack_any({"results": value})):
        try:
            done = protocol.decode_revocations_answer(payload, count)
        except Malformed:
            continue
        assert len(done) == count and all(isinstance(d, bool) for d in done)


@pytest.mark.parametrize(("answer", "expected"), [
    ([["refused", ["x"], ""]], "not a short text"),  # the answer that took a node down
    ([["refused", "because", ""]], "unknown refusal code"),
    ([["accepted", "forbidden", ""]], "with a refusal code"),
    ([["refused", "forbidden", "x" * 1001]], "not a short text"),
    ([["refused", "forbidden"]], "malformed result"),
    ([7], "malformed result"),
    ([["gone", "", ""]], "unknown status"),
    ([], "different number"),
])
def test_each_field_of_a_result_is_checked(answer: list[Any], expected: str) -> None:
    """Each check of the decoder, by the answer it refuses."""
    with pytest.raises(Malformed, match=expected):
        protocol.decode_transaction_answer(codec.pack({"results": answer}), [b"\x01" * 16])


def test_well_formed_answers_decode_to_their_outcomes() -> None:
    ids = [bytes([i]) * 16 for i in range(4)]
    answer = codec.pack({"results": [["accepted", "", ""], ["duplicate", "", ""],
                                     ["refused", "storage_full", "disk"],
                                     ["refused", "policy.share_with", "no"]]})
    assert protocol.decode_transaction_answer(answer, ids) == [
        protocol.Delivered(ids[0], duplicate=False), protocol.Delivered(ids[1], duplicate=True),
        protocol.NotYet(ids[2], "storage_full"),
        protocol.RefusedForGood(ids[3], "policy.share_with", "no")]


def test_a_malformed_spell_is_audited_once_and_a_new_spell_again() -> None:
    link, backoff = PeerLink(), BackoffPolicy()
    assert [link.failed(backoff, 0, 0.5, malformed=True)[1] for _ in range(5)] == \
        [True, False, False, False, False]
    assert link.recovered() is True
    assert link.failed(backoff, 0, 0.5, malformed=True)[1] is True
