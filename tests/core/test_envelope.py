"""Envelope encoding, signing and sealing: round trips hold and any tampering is refused."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison_net.core import codec, sealing
from liaison_net.core.envelope import (
    Envelope,
    Kind,
    Precedence,
    Urgency,
    encode_frame,
    read_frame,
)
from liaison_net.core.limits import HOUR_MS, MINUTE_MS, Limits
from liaison_net.core.restriction import UPDATE_KINDS
from liaison_net.core.signals import Pseudonym, Severity, SignalAnnex
from liaison_net.errors import (
    BadSignature,
    BadTimestamp,
    CannotOpen,
    Expired,
    Forbidden,
    LimitExceeded,
    Malformed,
    Refused,
    UnknownKey,
)
from tests.core.factories import NOW, Officer, lookup_for, make_tag, seal_from
from tests.core.strategies import tags

ALICE = Officer("nl/jdevries")
BOB = Officer("be/mpeeters")
CAROL = Officer("lu/cschmit")
LOOKUP = lookup_for(ALICE, BOB, CAROL)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _verify(raw: bytes, now: int | None = NOW) -> Envelope:
    return sealing.verify(raw, LOOKUP, now=now)


@SETTINGS
@given(
    tag=tags(),
    plaintext=st.binary(max_size=2048),
    kind=st.sampled_from([k for k in Kind if k not in UPDATE_KINDS]),  # test_restriction
    precedence=st.sampled_from(list(Precedence)),
    ttl=st.integers(1, 72 * HOUR_MS),
    with_ref=st.booleans(),
    recipients=st.sets(st.sampled_from([BOB, CAROL, ALICE]), min_size=1).map(
        lambda s: sorted(s, key=lambda o: o.id)),
)
def test_round_trip(tag, plaintext, kind, precedence, ttl, with_ref, recipients) -> None:
    """Sealed then encoded, an envelope decodes to the same header and opens to the same text."""
    ref = bytes(range(16)) if with_ref or kind is Kind.REPLY else None
    annex = (SignalAnnex(Severity.HIGH, (Pseudonym(b"k" * 16, bytes(32)),))
             if kind is Kind.SIGNAL else None)
    urgency = Urgency.URGENT_INDIRECT if kind is Kind.REQUEST else None
    consent = b"owner-signed consent" if ref is not None and kind is Kind.MESSAGE else None
    env = seal_from(ALICE, recipients, plaintext, tag=tag, kind=kind, precedence=precedence,
                    expires=NOW + ttl, ref=ref, signal=annex, urgency=urgency, consent=consent)
    raw = env.to_bytes()
    back = _verify(raw)
    assert back.header == env.header
    assert back.to_bytes() == raw
    for r in recipients:
        assert sealing.open_envelope(back, r.id, [r.encryption]) == plaintext


def _flip(data: bytes, index: int, bit: int) -> bytes:
    b = bytearray(data)
    b[index % len(b)] ^= 1 << bit
    return bytes(b)


@SETTINGS
@given(part=st.sampled_from(["header", "body", "signature"]), index=st.integers(0, 10_000),
       bit=st.integers(0, 7))
def test_any_flipped_signed_bit_is_refused(part: str, index: int, bit: int) -> None:
    """Flip any bit of the header, body (wraps, nonce, ciphertext) or signature: refused."""
    env = seal_from(ALICE, [BOB, CAROL])
    h, b, s = env.header_bytes, env.body_bytes, env.signature
    if part == "header":
        h = _flip(h, index, bit)
    elif part == "body":
        b = _flip(b, index, bit)
    else:
        s = _flip(s, index, bit)
    with pytest.raises(BadSignature):
        _verify(encode_frame(h, b, env.header.sender_key, s))


def _reencoded_header(env: Envelope, **changes: object) -> bytes:
    wire = env.header.to_wire()
    wire.update(changes)
    return codec.pack(wire)


FIELD_CHANGES = {
    "tag handling relaxed": lambda w: {"tag": {**w["tag"], "handling": "H0"}},
    "tag share_with widened": lambda w: {"tag": {**w["tag"],
                                                 "share_with": ["be", "de-nw", "lu", "nl"]}},
    "tag tlp relaxed": lambda w: {"tag": {**w["tag"], "tlp": "CLEAR"}},
    "tag retention extended": lambda w: {"tag": {**w["tag"],
                                                 "retain_until": w["tag"]["retain_until"] + 1}},
    "recipient dropped": lambda w: {"recipients": w["recipients"][:1]},
    "recipient replaced": lambda w: {"recipients": [["de-nw/kmueller", w["recipients"][0][1]],
                                                    w["recipients"][1]]},
    "precedence raised": lambda w: {"precedence": "flash"},
    "expiry extended": lambda w: {"expires": w["expires"] + 1},
    "kind changed": lambda w: {"kind": "notice"},
}


@pytest.mark.parametrize("change", sorted(FIELD_CHANGES))
def test_changed_header_field_is_refused(change: str) -> None:
    """A re-encoded header with any field changed no longer matches the signature."""
    env = seal_from(ALICE, [BOB, CAROL], tag=make_tag(handling=make_tag().handling.H2))
    header = _reencoded_header(env, **FIELD_CHANGES[change](env.header.to_wire()))
    assert header != env.header_bytes
    with pytest.raises(BadSignature):
        _verify(encode_frame(header, env.body_bytes, env.header.sender_key, env.signature))


def test_swapped_key_wraps_are_refused() -> None:
    env = seal_from(ALICE, [BOB, CAROL])
    body = codec.pack({**env.body.to_wire(), "wraps": list(reversed(env.body.wraps))})
    with pytest.raises(BadSignature):
        _verify(encode_frame(env.header_bytes, body, env.header.sender_key, env.signature))


def test_resigned_by_another_officer_is_refused() -> None:
    """A relay that re-signs someone else's envelope with its own key is refused."""
    env = seal_from(ALICE, [BOB])
    forged = sealing.crypto.sign(CAROL.signing, read_frame(env.to_bytes()).signed_message)
    with pytest.raises(Malformed, match="differs from the key"):
        _verify(encode_frame(env.header_bytes, env.body_bytes, CAROL.signing.key_id, forged))


def test_key_of_another_principal_is_refused() -> None:
    """A lookup that vouches for the key but for another officer: the sender claim fails."""
    env = seal_from(ALICE, [BOB])
    with pytest.raises(Forbidden):
        sealing.verify(env.to_bytes(), lambda kid: sealing.SignerKey("nl/other",
                                                                     ALICE.signing.public),
                       now=NOW)


def test_unknown_signer_is_refused_before_decoding() -> None:
    env = seal_from(ALICE, [BOB])
    with pytest.raises(UnknownKey):
        sealing.verify(env.to_bytes(), lookup_for(BOB), now=NOW)


@SETTINGS
@given(raw=st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_typed_errors(raw: bytes) -> None:
    with pytest.raises(Refused):
        _verify(raw)


@SETTINGS
@given(index=st.integers(0, 10_000), cut=st.booleans(), value=st.integers(0, 255))
def test_mangled_envelopes_raise_only_typed_errors(index: int, cut: bool, value: int) -> None:
    raw = seal_from(ALICE, [BOB]).to_bytes()
    i = index % len(raw)
    mangled = raw[:i] if cut else raw[:i] + bytes([value]) + raw[i + 1:]
    if mangled == raw:
        return
    with pytest.raises(Refused):
        _verify(mangled)


@SETTINGS
@given(plaintext=st.binary(max_size=512))
def test_sealed_for_a_cannot_be_opened_by_b(plaintext: bytes) -> None:
    env = _verify(seal_from(ALICE, [BOB], plaintext).to_bytes())
    with pytest.raises(CannotOpen):
        sealing.open_envelope(env, CAROL.id, [CAROL.encryption])
    # Carol, pretending to be Bob, holds the wrong key.
    with pytest.raises(CannotOpen):
        sealing.open_envelope(env, BOB.id, [CAROL.encryption])
    # Carol's key substituted under Bob's key id still fails to unwrap.
    fake = dataclasses.replace(CAROL.encryption, public=BOB.encryption.public)
    with pytest.raises(CannotOpen):
        sealing.open_envelope(env, BOB.id, [fake])
    assert sealing.open_envelope(env, BOB.id, [CAROL.encryption, BOB.encryption]) == plaintext


def test_future_created_is_refused_beyond_skew() -> None:
    env = seal_from(ALICE, [BOB], now=NOW + 6 * MINUTE_MS, expires=NOW + HOUR_MS)
    with pytest.raises(BadTimestamp, match="future"):
        _verify(env.to_bytes())
    assert _verify(env.to_bytes(), now=NOW + MINUTE_MS).header == env.header


def test_expired_is_refused_but_readable_later() -> None:
    env = seal_from(ALICE, [BOB], expires=NOW + HOUR_MS)
    with pytest.raises(Expired):
        _verify(env.to_bytes(), now=NOW + HOUR_MS)
    assert _verify(env.to_bytes(), now=None).header == env.header


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"expires": NOW}, BadTimestamp),
        ({"expires": NOW + 31 * 24 * HOUR_MS}, LimitExceeded),
        ({"plaintext": b"x" * 20, "limits": Limits(max_body_bytes=10)}, LimitExceeded),
        ({"sender": "NL/jdevries"}, Malformed),
        ({"plaintext": "not bytes"}, Malformed),
    ],
)
def test_seal_refuses_bad_input(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        seal_from(ALICE, [BOB], **kwargs)


def test_no_recipients_refused() -> None:
    with pytest.raises(LimitExceeded):
        seal_from(ALICE, [])


def test_duplicate_recipients_refused() -> None:
    with pytest.raises(Malformed, match="repeat"):
        seal_from(ALICE, [BOB, BOB])


def test_decoder_limits_apply() -> None:
    raw = seal_from(ALICE, [BOB, CAROL]).to_bytes()
    with pytest.raises(LimitExceeded):
        sealing.verify(raw, LOOKUP, now=NOW, limits=Limits(max_recipients=1))
    with pytest.raises(LimitExceeded):
        sealing.verify(raw, LOOKUP, now=NOW, limits=Limits(max_header_bytes=100))


def test_frame_version_and_shape_checked_before_signature() -> None:
    env = seal_from(ALICE, [BOB])
    frame = [2, env.header_bytes, env.body_bytes, env.header.sender_key, env.signature]
    with pytest.raises(Malformed, match="version"):
        _verify(codec.pack(frame))
    with pytest.raises(Malformed, match="5 items"):
        _verify(codec.pack(frame[:4]))


@pytest.mark.parametrize("recipients", [1, 3])
def test_largest_allowed_body_verifies(recipients: int) -> None:
    """What seal accepts at the body limit, verify accepts too."""
    limits = Limits(max_body_bytes=70_000)
    env = seal_from(ALICE, [BOB, CAROL, ALICE][:recipients], b"x" * 70_000, limits=limits)
    assert sealing.verify(env.to_bytes(), LOOKUP, now=NOW, limits=limits).id == env.id


def test_retention_before_expiry_is_refused() -> None:
    with pytest.raises(BadTimestamp, match="retain_until"):
        seal_from(ALICE, [BOB], tag=make_tag(retain_until=NOW + HOUR_MS),
                  expires=NOW + 2 * HOUR_MS)


def test_bad_ref_is_refused_at_seal() -> None:
    with pytest.raises(Malformed, match="envelope id"):
        seal_from(ALICE, [BOB], ref=b"x")


def test_signal_annex_is_signed_and_required_for_signals() -> None:
    annex = SignalAnnex(Severity.CRITICAL, (Pseudonym(b"k" * 16, b"p" * 32),))
    env = seal_from(ALICE, [BOB], kind=Kind.SIGNAL, signal=annex)
    assert _verify(env.to_bytes()).header.signal == annex
    lowered = _reencoded_header(env, signal={"severity": "low",
                                             "pseudonyms": [[b"k" * 16, b"p" * 32]]})
    with pytest.raises(BadSignature):
        _verify(encode_frame(lowered, env.body_bytes, env.header.sender_key, env.signature))
    with pytest.raises(Malformed, match="signal annex"):
        seal_from(ALICE, [BOB], kind=Kind.SIGNAL)
    with pytest.raises(Malformed, match="signal annex"):
        seal_from(ALICE, [BOB], kind=Kind.MESSAGE, signal=annex)


def test_request_urgency_sets_its_due_time_and_is_signed() -> None:
    env = seal_from(ALICE, [BOB], kind=Kind.REQUEST, urgency=Urgency.URGENT_DIRECT)
    assert _verify(env.to_bytes()).header.due == NOW + 8 * HOUR_MS
    relaxed = _reencoded_header(env, urgency="other")
    with pytest.raises(BadSignature):
        _verify(encode_frame(relaxed, env.body_bytes, env.header.sender_key, env.signature))
    with pytest.raises(Malformed, match="urgency"):
        seal_from(ALICE, [BOB], kind=Kind.REQUEST)
    with pytest.raises(Malformed, match="reply must name"):
        seal_from(ALICE, [BOB], kind=Kind.REPLY)
    with pytest.raises(Malformed, match="consent comes with a forward"):
        seal_from(ALICE, [BOB], consent=b"x")
