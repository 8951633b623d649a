"""Subject pseudonyms: normalisation folds variants and only variants; the OPRF obeys its
algebra, hides its input, names its key and refuses every point it should not multiply."""

from __future__ import annotations

import calendar
import datetime

import nacl.bindings as nacl_b  # tests may build hostile points; the core may not
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from liaison_net.core import crypto
from liaison_net.core.pseudonym import (
    MAX_DOCUMENT_CHARS,
    MAX_NAME_CHARS,
    Blinding,
    KeyRing,
    blind,
    direct,
    evaluate,
    finalize,
    key_id_for,
    matches,
    normalise,
    normalise_date,
    normalise_document,
    normalise_name,
)
from liaison_net.errors import Malformed, UnknownKey

L = 2**252 + 27742317777372353535851937790883648493  # order of the prime-order subgroup

# --- strategies: canonical identifiers and programmatic variants of them --------------------

base_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)
base_tokens = st.lists(base_token, min_size=1, max_size=5)

#: Letters whose marks or folding map back onto the ASCII letter (never ä, ö, ü: those add e).
ACCENTED = {"a": "àáâãåāą", "c": "çčć", "d": "ďđ", "e": "èéêëēęě", "g": "ğ", "i": "ìíîïīı",
            "l": "ľłĺ", "n": "ñńň", "o": "òóôõōő", "r": "řŕ", "s": "šśş", "t": "ťţ",
            "u": "ùúûūůű", "y": "ýÿ", "z": "žźż"}
UMLAUTS = {"ae": "äÄ", "oe": "öÖ", "ue": "üÜ", "ss": "ß"}
SEPARATORS = [" ", "  ", "\t", "\u00a0", "\u3000", "-", "\u2010", "\u2011", "\u2013", "\u2014",
              ", ", ",", ".", " - ", "/", "_", " . "]
#: Ignored inside a word: apostrophe look-alikes (U+00B4 ACUTE ACCENT decomposes to a space,
#: so it must be dropped before NFKD), the soft hyphen and the zero-width space.
IN_WORD_IGNORED = ["'", "\u2019", "\u02bc", "\u00b4", "`", "\u00ad", "\u200b"]


@st.composite
def spelling_variant(draw: st.DrawFn, token: str) -> str:
    """The same token in other case, with marks, German umlauts/ß and in-word apostrophes."""
    out: list[str] = []
    i = 0
    while i < len(token):
        pair = token[i:i + 2]
        if pair in UMLAUTS and draw(st.booleans()):
            out.append(draw(st.sampled_from(UMLAUTS[pair])))
            i += 2
        else:
            ch = token[i]
            choices = [ch, *ACCENTED.get(ch, "")]
            ch = draw(st.sampled_from(choices))
            out.append(ch.upper() if draw(st.booleans()) else ch)
            i += 1
        if i < len(token) and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(IN_WORD_IGNORED)))
    return "".join(out)


@st.composite
def name_variant(draw: st.DrawFn, tokens: list[str]) -> str:
    """Tokens in any order, each spelled in a variant, joined by any separators."""
    order = draw(st.permutations(tokens))
    words = [draw(spelling_variant(t)) for t in order]
    seps = [draw(st.sampled_from(SEPARATORS)) for _ in words[1:]]
    text = words[0] + "".join(s + w for s, w in zip(seps, words[1:], strict=True))
    lead = draw(st.sampled_from(["", " ", "\t", " , "]))
    trail = draw(st.sampled_from(["", " ", "\n", "."]))
    return lead + text + trail


birth_dates = st.dates(min_value=datetime.date(1900, 1, 1),
                       max_value=datetime.date(2100, 12, 31))


@st.composite
def date_variant(draw: st.DrawFn, day: datetime.date) -> str:
    if draw(st.booleans()):
        text = day.isoformat()
    else:
        sep = draw(st.sampled_from("/-."))
        d = f"{day.day:02d}" if draw(st.booleans()) else str(day.day)
        m = f"{day.month:02d}" if draw(st.booleans()) else str(day.month)
        text = f"{d}{sep}{m}{sep}{day.year:04d}"
    if draw(st.booleans()):  # fullwidth digits, as some input methods produce
        text = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)
    return draw(st.sampled_from(["", " "])) + text + draw(st.sampled_from(["", " "]))


base_document = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
                        max_size=12)


@st.composite
def document_variant(draw: st.DrawFn, doc: str) -> str:
    out = []
    for ch in doc:
        ch = ch.lower() if draw(st.booleans()) else ch
        if draw(st.integers(0, 5)) == 0:
            ch = chr(ord(ch) + 0xFEE0)  # fullwidth form
        out.append(ch)
        if draw(st.integers(0, 3)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "/"])))
    return "".join(out)


# --- normalisation: variants are equal ------------------------------------------------------


@given(st.data(), base_tokens, birth_dates, base_document)
def test_variants_of_the_same_identifiers_normalise_equal(
        data: st.DataObject, tokens: list[str], day: datetime.date, doc: str) -> None:
    """Case, diacritics, umlauts, whitespace, punctuation, name order, date format, document
    spelling: two independently drawn variants give the same bytes, equal to the canonical."""
    canonical = normalise(" ".join(tokens), day.isoformat(), doc)
    first = normalise(data.draw(name_variant(tokens)), data.draw(date_variant(day)),
                      data.draw(document_variant(doc)))
    second = normalise(data.draw(name_variant(tokens)), data.draw(date_variant(day)),
                       data.draw(document_variant(doc)))
    assert first == second == canonical


@given(st.data(), base_tokens)
def test_name_normalisation_is_idempotent(data: st.DataObject, tokens: list[str]) -> None:
    once = normalise_name(data.draw(name_variant(tokens)))
    assert normalise_name(once) == once == " ".join(sorted(tokens))


@pytest.mark.parametrize(("a", "b"), [
    ("de Vries, Jan", "Jan de Vries"),
    ("Jan DE   VRIES", "jan-de-vries"),
    ("Müller", "MUELLER"),
    ("Straße", "STRASSE"),
    ("Y\u0131lmaz", "YILMAZ"),  # dotless i
    ("İlker", "ilker"),
    ("Noël", "Noel"),
    ("O\u2019Brien", "OBrien"),
    ("Søren Ærø", "Soeren Aeroe"),
    ("Łukasz Wałęsa", "Walesa, Lukasz"),
    ("Jean\u2010Pierre", "Jean Pierre"),  # U+2010 HYPHEN
    ("\uff2a\uff21\uff2e", "jan"),  # fullwidth JAN
])
def test_documented_folds(a: str, b: str) -> None:
    """The examples of docs/pseudonyms.md hold."""
    assert normalise_name(a) == normalise_name(b)


@pytest.mark.parametrize(("a", "b"), [
    ("Müller", "Muller"),  # documented: the umlaut is transliterated, not erased
    ("Jan Devries", "Jan de Vries"),  # tokens are not merged
    ("De Smet", "Desmet"),
    ("Ali", "Ali Ali"),  # repeated tokens count
])
def test_documented_non_folds(a: str, b: str) -> None:
    assert normalise_name(a) != normalise_name(b)


# --- normalisation: different identifiers stay different -----------------------------------


@given(st.data(), base_tokens, base_tokens, birth_dates)
def test_different_names_stay_different(data: st.DataObject, a: list[str], b: list[str],
                                        day: datetime.date) -> None:
    assume(sorted(a) != sorted(b))
    assert (normalise(data.draw(name_variant(a)), day.isoformat())
            != normalise(data.draw(name_variant(b)), day.isoformat()))


@given(st.data(), base_tokens, birth_dates, birth_dates)
def test_different_dates_stay_different(data: st.DataObject, tokens: list[str],
                                        d1: datetime.date, d2: datetime.date) -> None:
    assume(d1 != d2)
    name = " ".join(tokens)
    assert (normalise(name, data.draw(date_variant(d1)))
            != normalise(name, data.draw(date_variant(d2))))


@given(base_tokens, birth_dates, base_document, base_document)
def test_different_documents_stay_different(tokens: list[str], day: datetime.date, d1: str,
                                            d2: str) -> None:
    assume(d1 != d2)
    name = " ".join(tokens)
    assert normalise(name, day.isoformat(), d1) != normalise(name, day.isoformat(), d2)
    assert normalise(name, day.isoformat(), d1) != normalise(name, day.isoformat())


def test_fields_cannot_shift_into_each_other() -> None:
    """A document number is never read as part of the name or the date."""
    assert normalise("Jan", "1990-01-01", "X1") != normalise("Jan X1", "1990-01-01")


# --- normalisation: strict errors -----------------------------------------------------------


@given(st.integers(1900, 2100), st.integers(0, 13), st.integers(0, 32))
def test_dates_are_accepted_exactly_when_they_exist(year: int, month: int, day: int) -> None:
    """The calendar module is the oracle, for every format."""
    exists = 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
    for text in (f"{year:04d}-{month:02d}-{day:02d}", f"{day:02d}/{month:02d}/{year}",
                 f"{day}-{month}-{year}", f"{day}.{month:02d}.{year}"):
        if exists:
            assert normalise_date(text) == datetime.date(year, month, day).isoformat()
        else:
            with pytest.raises(Malformed):
                normalise_date(text)


@pytest.mark.parametrize("text", ["", "  ", "1990", "1990-2-3", "90-02-03", "03/02/90",
                                  "03/02-1990", "1990/02/03", "1899-12-31", "2101-01-01",
                                  "2023-02-29", "1900-02-29", "3 februari 1990", "٠٣/٠٢/١٩٩٠",
                                  "1" * 40])
def test_malformed_dates_are_refused(text: str) -> None:
    with pytest.raises(Malformed):
        normalise_date(text)


@pytest.mark.parametrize("name", ["", "   ", "-- ,.", "'", "\u200b", "a" * (MAX_NAME_CHARS + 1)])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(Malformed):
        normalise_name(name)


def test_name_at_the_limit_is_accepted() -> None:
    assert normalise_name("a" * MAX_NAME_CHARS) == "a" * MAX_NAME_CHARS


@pytest.mark.parametrize("doc", ["--", " . ", "AB-É12", "ПАСПОРТ", "A" * (MAX_DOCUMENT_CHARS + 1)])
def test_malformed_documents_are_refused(doc: str) -> None:
    with pytest.raises(Malformed):
        normalise_document(doc)


def test_no_document_is_empty() -> None:
    assert normalise_document("") == normalise_document("  ") == ""
    assert normalise_document("A" * MAX_DOCUMENT_CHARS) == "A" * MAX_DOCUMENT_CHARS


@pytest.mark.parametrize("args", [(None, "1990-01-01"), ("Jan", 19900101),
                                  ("Jan", "1990-01-01", 7)])
def test_non_text_fields_are_refused(args: tuple[object, ...]) -> None:
    with pytest.raises(Malformed):
        normalise(*args)  # type: ignore[arg-type]  # wrong types on purpose


# --- the OPRF: algebra ----------------------------------------------------------------------

keys = st.integers(1, L - 1).map(lambda n: n.to_bytes(32, "little"))  # edge cases 1, L-1 too
inputs = st.binary(min_size=1, max_size=300)


@settings(max_examples=60)
@given(keys, inputs)
def test_unblinded_evaluation_equals_direct_evaluation(key: bytes, x: bytes) -> None:
    kid = key_id_for(key)
    blinded, blinding = blind(x)
    assert finalize(blinding, evaluate(key, blinded), kid) == direct(key, x, kid)


@settings(max_examples=30)
@given(st.data(), base_tokens, birth_dates)
def test_variants_give_the_same_pseudonym(data: st.DataObject, tokens: list[str],
                                          day: datetime.date) -> None:
    """End to end: two officers typing the same person differently get one pseudonym."""
    key = crypto.new_oprf_key()
    kid = key_id_for(key)
    results = []
    for _ in range(2):
        x = normalise(data.draw(name_variant(tokens)), data.draw(date_variant(day)))
        blinded, blinding = blind(x)
        results.append(finalize(blinding, evaluate(key, blinded), kid))
    assert results[0] == results[1] == direct(key, normalise(" ".join(tokens),
                                                             day.isoformat()), kid)


@settings(max_examples=40)
@given(keys, keys, inputs)
def test_different_keys_give_different_pseudonyms(k1: bytes, k2: bytes, x: bytes) -> None:
    assume(k1 != k2)
    blinded, blinding = blind(x)
    p1 = finalize(blinding, evaluate(k1, blinded), key_id_for(k1))
    p2 = finalize(blinding, evaluate(k2, blinded), key_id_for(k2))
    assert p1 != p2
    # even under one claimed key id, the evaluated value itself differs
    assert finalize(blinding, evaluate(k2, blinded), key_id_for(k1)) != p1


@settings(max_examples=40)
@given(keys, inputs, inputs)
def test_different_inputs_give_different_pseudonyms(key: bytes, x: bytes, y: bytes) -> None:
    assume(x != y)
    kid = key_id_for(key)
    assert direct(key, x, kid) != direct(key, y, kid)


@settings(max_examples=40)
@given(keys, keys, keys)
def test_point_mul_follows_scalar_arithmetic(a: bytes, b: bytes, key: bytes) -> None:
    """a*(b*P) == (a*b mod L)*P and r^-1*(r*P) == P, with the product computed in Python."""
    point = crypto.oprf_public_key(key)
    ab = (int.from_bytes(a, "little") * int.from_bytes(b, "little") % L).to_bytes(32, "little")
    assert crypto.point_mul(a, crypto.point_mul(b, point)) == crypto.point_mul(ab, point)
    assert crypto.point_mul(crypto.scalar_invert(a), crypto.point_mul(a, point)) == point


def test_the_key_id_is_part_of_the_pseudonym() -> None:
    key, other = crypto.new_oprf_key(), crypto.new_oprf_key()
    blinded, blinding = blind(b"x")
    evaluated = evaluate(key, blinded)
    assert finalize(blinding, evaluated, key_id_for(key)) != finalize(blinding, evaluated,
                                                                      key_id_for(other))
    with pytest.raises(Malformed):
        direct(key, b"x", key_id_for(other))


def test_known_answer() -> None:
    """Pins the construction (labels, framing, hash to group) so clients in other languages
    and later versions of this code compute the same pseudonyms; a change must be a new
    normalisation/PRF version, never a silent one."""
    key = crypto.scalar_reduce(bytes(range(64)))
    x = normalise("Jan de Vries", "01/02/1990", "NL-AB1234")
    assert x == b"liaison-net/subject/v1\x1fde jan vries\x1f1990-02-01\x1fNLAB1234"
    assert key_id_for(key).hex() == KAT_KEY_ID
    assert direct(key, x, key_id_for(key)).hex() == KAT_PSEUDONYM


KAT_KEY_ID = "dae4ac2d65ec9b25d883f31e391a2acf"
KAT_PSEUDONYM = "4bb5f27c1fc7a2a4c9166321f6f5548b02da27730d8f581e15e7f547aca96d2c"


# --- the OPRF: what the node sees -----------------------------------------------------------


@settings(max_examples=30)
@given(inputs)
def test_two_blindings_of_the_same_input_differ(x: bytes) -> None:
    b1, s1 = blind(x)
    b2, s2 = blind(x)
    assert b1 != b2 and s1.scalar != s2.scalar
    assert crypto.is_valid_point(b1) and crypto.is_valid_point(b2)


def test_blinding_secrets_are_not_in_its_repr() -> None:
    x = normalise("Jan de Vries", "1990-02-01")
    _, blinding = blind(x)
    shown = repr(blinding) + str(blinding)
    assert "vries" not in shown and blinding.scalar.hex() not in shown


# --- the OPRF: hostile points and keys ------------------------------------------------------

SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
)]
IDENTITY = SMALL_ORDER[1]
NON_CANONICAL = [
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # y = p+1
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000080"),  # -0
]


def _mixed_point() -> bytes:
    """A curve point with a small-order component: on the curve, outside the subgroup."""
    return bytes(nacl_b.crypto_core_ed25519_add(crypto.oprf_public_key(crypto.new_oprf_key()),
                                                SMALL_ORDER[3]))


def test_the_hostile_points_are_what_they_claim() -> None:
    """Guard against a vacuous list: each small-order point times 8 is the identity."""
    for point in SMALL_ORDER:
        acc = point
        for _ in range(7):
            acc = bytes(nacl_b.crypto_core_ed25519_add(acc, point))
        assert acc == IDENTITY
    assert not nacl_b.crypto_core_ed25519_is_valid_point(_mixed_point())


def _hostile_points() -> list[bytes]:
    return [*SMALL_ORDER, *NON_CANONICAL, _mixed_point(), b"", b"\x01" * 31, b"\x01" * 33]


def test_evaluate_refuses_hostile_points() -> None:
    key = crypto.new_oprf_key()
    for point in _hostile_points():
        with pytest.raises(Malformed):
            evaluate(key, point)
    with pytest.raises(Malformed):
        evaluate(key, "not bytes")  # type: ignore[arg-type]  # wrong type on purpose


def test_finalize_refuses_hostile_points() -> None:
    _, blinding = blind(b"x")
    kid = key_id_for(crypto.new_oprf_key())
    for point in _hostile_points():
        with pytest.raises(Malformed):
            finalize(blinding, point, kid)


@settings(max_examples=60)
@given(st.binary(min_size=32, max_size=32))
def test_random_bytes_off_the_group_are_refused(raw: bytes) -> None:
    assume(not crypto.is_valid_point(raw))
    _, blinding = blind(b"x")
    key = crypto.new_oprf_key()
    with pytest.raises(Malformed):
        evaluate(key, raw)
    with pytest.raises(Malformed):
        finalize(blinding, raw, key_id_for(key))


@settings(max_examples=60)
@given(st.integers(0, 255))
def test_a_tampered_evaluation_is_refused_or_gives_another_pseudonym(bit: int) -> None:
    key = crypto.new_oprf_key()
    kid = key_id_for(key)
    blinded, blinding = blind(b"subject")
    evaluated = bytearray(evaluate(key, blinded))
    evaluated[bit // 8] ^= 1 << (bit % 8)
    try:
        pseudonym = finalize(blinding, bytes(evaluated), kid)
    except Malformed:
        return
    assert pseudonym != direct(key, b"subject", kid)


def test_an_evaluation_under_another_key_gives_another_pseudonym() -> None:
    key, rogue = crypto.new_oprf_key(), crypto.new_oprf_key()
    blinded, blinding = blind(b"subject")
    kid = key_id_for(key)
    assert finalize(blinding, evaluate(rogue, blinded), kid) != direct(key, b"subject", kid)


@pytest.mark.parametrize("key", [bytes(32), L.to_bytes(32, "little"), b"\xff" * 32, b"k" * 31])
def test_bad_keys_are_refused(key: bytes) -> None:
    blinded, _ = blind(b"x")
    with pytest.raises(Malformed):
        evaluate(key, blinded)
    with pytest.raises(Malformed):
        key_id_for(key)


@pytest.mark.parametrize("kid", [b"", b"k" * 15, b"k" * 17])
def test_bad_key_ids_are_refused(kid: bytes) -> None:
    blinded, blinding = blind(b"x")
    key = crypto.new_oprf_key()
    with pytest.raises(Malformed):
        finalize(blinding, evaluate(key, blinded), kid)


@pytest.mark.parametrize("x", [b"", b"x" * 4097, "text"])
def test_bad_identifiers_are_refused(x: bytes) -> None:
    with pytest.raises(Malformed):
        blind(x)


def test_hash_to_group_is_domain_separated() -> None:
    assert crypto.hash_to_group(b"a", b"x") != crypto.hash_to_group(b"b", b"x")
    assert crypto.hash_to_group(b"a", b"x") == crypto.hash_to_group(b"a", b"x")
    assert crypto.is_valid_point(crypto.hash_to_group(b"a", b""))
    with pytest.raises(Malformed):
        crypto.hash_to_group(b"", b"x")


# --- key rotation ---------------------------------------------------------------------------


def test_matching_across_a_rotation() -> None:
    """Before: one key. During the window: both, signals carry both pseudonyms. After: the
    new key only. Signals from adjacent phases match; pre-rotation and post-window ones
    cannot (the documented limit of the window)."""
    old_key, new_key = crypto.new_oprf_key(), crypto.new_oprf_key()
    x = normalise("Jan de Vries", "1990-02-01")
    before = KeyRing([old_key])
    during = before.rotate(new_key)
    after = during.retire()
    assert during.key_ids == (key_id_for(new_key), key_id_for(old_key))
    assert after.key_ids == (key_id_for(new_key),)

    def client(ring: KeyRing) -> tuple[tuple[bytes, bytes], ...]:
        blinded, blinding = blind(x)
        return tuple((kid, finalize(blinding, ev, kid)) for kid, ev in ring.evaluate_all(blinded))

    sig_before, sig_during, sig_after = client(before), client(during), client(after)
    assert sig_during == during.direct_all(x)
    assert matches(sig_before, sig_during) and matches(sig_during, sig_after)
    assert not matches(sig_before, sig_after)
    other = KeyRing([new_key, old_key]).direct_all(normalise("Piet de Vries", "1990-02-01"))
    assert not matches(sig_during, other)


def test_equal_values_under_different_key_ids_do_not_match() -> None:
    assert not matches([(b"a" * 16, b"v" * 32)], [(b"b" * 16, b"v" * 32)])
    assert matches([(b"a" * 16, b"v" * 32)], [(b"b" * 16, b"w" * 32), (b"a" * 16, b"v" * 32)])


def test_key_ring_limits_and_unknown_keys() -> None:
    k1, k2, k3 = (crypto.new_oprf_key() for _ in range(3))
    with pytest.raises(Malformed):
        KeyRing([])
    with pytest.raises(Malformed):
        KeyRing([k1, k2, k3])
    with pytest.raises(Malformed):
        KeyRing([k1, k1])
    ring = KeyRing([k1, k2])
    blinded, _ = blind(b"x")
    assert ring.evaluate(blinded) == evaluate(k1, blinded)
    assert ring.evaluate(blinded, key_id_for(k2)) == evaluate(k2, blinded)
    with pytest.raises(UnknownKey):
        ring.evaluate(blinded, key_id_for(k3))
    assert k1.hex() not in repr(ring) and k2.hex() not in repr(ring)
    assert ring.rotate(k3).key_ids == (key_id_for(k3), key_id_for(k1))


def test_blinding_is_a_plain_value_object() -> None:
    blinding = Blinding(crypto.random_scalar(), b"x")
    with pytest.raises(AttributeError):
        blinding.scalar = b""  # type: ignore[misc]  # frozen on purpose
