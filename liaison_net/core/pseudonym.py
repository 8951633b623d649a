"""Subject pseudonyms: normalised identifiers under an oblivious PRF (2HashDH, edwards25519).

Theory of operation (docs/pseudonyms.md has the reasons and the threat model):

* The officer's client turns what it knows of a person (name, birth date, optionally a
  document number) into one canonical byte string x with ``normalise``; spelling, case,
  diacritic, punctuation, name-order and date-format variants give the same x.
* The client blinds it: ``blind(x)`` draws a random scalar r and sends only
  B = r * H1(x). B is a uniformly random group element whatever x is, so the node learns
  nothing about x from it, and two blindings of the same x are unlinkable.
* The node evaluates under the network pseudonym key k: ``evaluate(k, B)`` = k * B. It can
  rate-limit and audit the request (who asked, why), but cannot tell whom it is about.
* The client unblinds, r^-1 * (k * B) = k * H1(x), and hashes it with x and the key id:
  ``finalize`` returns H2(key id, x, k * H1(x)), 32 bytes. That is F(k, x) of 2HashDH; a node
  computes the same value directly with ``direct`` (tests, and its own use).

Without k nobody can compute F, so holding pseudonyms does not let anyone test guesses
offline; with k one could, which is why k stays on the nodes and is never given to a client.

Every point from the other side is checked (``crypto.point_mul`` refuses points off the
curve, outside the prime-order subgroup, of small order or the identity) and a refusal is
``Malformed``. Pseudonyms name the key that made them (the key id), and a ``KeyRing`` holds
the current and, during a rotation, the previous key, so a signal carries one pseudonym per
key and two signals match when they share a key id and the value under it (``matches``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from liaison_net.core import crypto
from liaison_net.errors import Malformed, UnknownKey

NORMALISATION_VERSION = 1
PSEUDONYM_BYTES = 32
KEY_ID_BYTES = crypto.KEY_ID_BYTES  # 16
POINT_BYTES = crypto.POINT_BYTES  # 32
MAX_NAME_CHARS = 200
MAX_DOCUMENT_CHARS = 40
MAX_DATE_CHARS = 32
MIN_BIRTH_YEAR = 1900
MAX_BIRTH_YEAR = 2100
MAX_IDENTIFIERS_BYTES = 4096
#: The current key and, during a rotation window, the previous one (signals carry at most 2).
MAX_RING_KEYS = 2

_H1_DOMAIN = b"liaison-net/pseudonym/v1/h1"
_H2_LABEL = b"liaison-net/pseudonym/v1/h2\x00"
_SUBJECT_PREFIX = f"liaison-net/subject/v{NORMALISATION_VERSION}"
_FIELD_SEP = "\x1f"  # a control character: no normalised field can contain it
_MAX_NORMALISED_NAME_CHARS = 1000  # guards against pathological compatibility expansions

# --- normalisation --------------------------------------------------------------------------

#: Apostrophe look-alikes are deleted, so O'Brien, O\u2019Brien and OBrien are one name.
_APOSTROPHES = frozenset("'\u2018\u2019\u201b\u02bb\u02bc\u02bd\u0060\u00b4\u2032\uff07")
_DIAERESIS = "\u0308"
#: German umlauts are transliterated as in German and in passports' machine-readable zone
#: (ICAO 9303): Müller = Mueller. Only after a, o, u; ë and ï (Noël, Loïc) just lose the mark.
_UMLAUT_BASES = frozenset("aouAOU")
#: Letters with no Unicode decomposition, folded as ICAO 9303 transliterates them (after
#: casefold, so only lowercase forms appear; casefold already turns ß and ẞ into ss).
_LETTER_FOLDS = {"æ": "ae", "œ": "oe", "ø": "oe", "þ": "th", "ð": "d", "đ": "d", "ł": "l",
                 "\u0131": "i", "ħ": "h", "ŧ": "t", "ŀ": "l"}
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DMY_DATE = re.compile(r"([0-9]{1,2})([/.\-])([0-9]{1,2})\2([0-9]{4})")


def _strip_marks(text: str, *, umlauts: bool) -> str:
    """Drop combining marks from NFKD text; an umlaut on a/o/u becomes a following e."""
    out: list[str] = []
    umlaut_base = False
    for ch in text:
        if unicodedata.category(ch).startswith("M"):
            if umlauts and ch == _DIAERESIS and umlaut_base:
                out.append("e")
                umlaut_base = False
            continue
        out.append(ch)
        umlaut_base = ch in _UMLAUT_BASES
    return "".join(out)


def _name_tokens(name: str) -> list[str]:
    text = "".join(ch for ch in name if ch not in _APOSTROPHES)
    text = _strip_marks(unicodedata.normalize("NFKD", text), umlauts=True)
    # casefold can produce new marks (İ -> i + dot above) and letters to fold (Æ -> æ).
    text = _strip_marks(unicodedata.normalize("NFKD", text.casefold()), umlauts=False)
    text = "".join(_LETTER_FOLDS.get(ch, ch) for ch in text if ch not in _APOSTROPHES)
    tokens: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch.isalnum():
            current.append(ch)
        elif unicodedata.category(ch) == "Cf":
            continue  # soft hyphen, zero-width joiners: invisible, so they join
        elif current:
            tokens.append("".join(current))
            current = []
    if current:
        tokens.append("".join(current))
    return tokens


def normalise_name(name: str) -> str:
    """Casefolded, transliterated tokens of letters and digits, in sorted order."""
    if not isinstance(name, str):
        raise Malformed("name must be text")
    if len(name) > MAX_NAME_CHARS:
        raise Malformed(f"name is {len(name)} characters, limit {MAX_NAME_CHARS}")
    tokens = _name_tokens(name)
    if not tokens:
        raise Malformed("name has no letters or digits")
    result = " ".join(sorted(tokens))
    if len(result) > _MAX_NORMALISED_NAME_CHARS:
        raise Malformed("name expands to too many characters under normalisation")
    return result


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def normalise_date(birth_date: str) -> str:
    """YYYY-MM-DD, DD/MM/YYYY, DD-MM-YYYY or DD.MM.YYYY (day and month may be one digit)
    -> ISO YYYY-MM-DD; refuses impossible dates and years outside the accepted range."""
    if not isinstance(birth_date, str):
        raise Malformed("birth date must be text")
    if len(birth_date) > MAX_DATE_CHARS:
        raise Malformed(f"birth date is {len(birth_date)} characters, limit {MAX_DATE_CHARS}")
    text = unicodedata.normalize("NFKC", birth_date).strip()
    if m := _ISO_DATE.fullmatch(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _DMY_DATE.fullmatch(text):
        day, month, year = int(m[1]), int(m[3]), int(m[4])
    else:
        raise Malformed("birth date must be YYYY-MM-DD, DD/MM/YYYY, DD-MM-YYYY or DD.MM.YYYY")
    if not MIN_BIRTH_YEAR <= year <= MAX_BIRTH_YEAR:
        raise Malformed(f"birth year must be {MIN_BIRTH_YEAR} to {MAX_BIRTH_YEAR}")
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        raise Malformed("birth date does not exist")
    return f"{year:04d}-{month:02d}-{day:02d}"


def normalise_document(document: str) -> str:
    """Uppercase ASCII letters and digits; separators dropped; "" means no document."""
    if not isinstance(document, str):
        raise Malformed("document number must be text")
    if len(document) > MAX_DOCUMENT_CHARS:
        raise Malformed(f"document number is {len(document)} characters, "
                        f"limit {MAX_DOCUMENT_CHARS}")
    text = unicodedata.normalize("NFKC", document)
    if not text.strip():
        return ""
    out = []
    for ch in text:
        if ch.isalnum():
            if not ch.isascii():
                raise Malformed("document number may hold only ASCII letters and digits")
            out.append(ch.upper())
    if not out:
        raise Malformed("document number has no letters or digits")
    return "".join(out)


def normalise(name: str, birth_date: str, document: str = "") -> bytes:
    """The canonical identifiers of a person, the input x of the pseudonym PRF."""
    fields = (_SUBJECT_PREFIX, normalise_name(name), normalise_date(birth_date),
              normalise_document(document))
    return _FIELD_SEP.join(fields).encode("utf-8")


# --- the oblivious PRF ----------------------------------------------------------------------


@dataclass(frozen=True, repr=False, eq=False)
class Blinding:
    """The client's secret state between ``blind`` and ``finalize``: never logged or sent.

    The same blinding may be finalized against evaluations under several keys (a rotation
    window), each with its own key id.
    """

    scalar: bytes
    identifiers: bytes

    def __repr__(self) -> str:
        return "Blinding(<secret>)"


def _check_identifiers(identifiers: bytes) -> None:
    if not isinstance(identifiers, bytes) or not 0 < len(identifiers) <= MAX_IDENTIFIERS_BYTES:
        raise Malformed(f"identifiers must be 1 to {MAX_IDENTIFIERS_BYTES} bytes")


def _check_key_id(key_id: bytes) -> None:
    if not isinstance(key_id, bytes) or len(key_id) != KEY_ID_BYTES:
        raise Malformed(f"pseudonym key id must be {KEY_ID_BYTES} bytes")


def _received_point(what: str, point: bytes) -> bytes:
    """Untrusted bytes from the other side: a valid group element, or Malformed."""
    if not crypto.is_valid_point(point):
        raise Malformed(f"{what} is not a valid group element (wrong size, off the curve, "
                        "outside the prime-order subgroup, small order or the identity)")
    return point


def _h1(identifiers: bytes) -> bytes:
    return crypto.hash_to_group(_H1_DOMAIN, identifiers)


def _h2(key_id: bytes, identifiers: bytes, point: bytes) -> bytes:
    framed = (_H2_LABEL + key_id + len(identifiers).to_bytes(4, "big") + identifiers + point)
    return hashlib.sha256(framed).digest()


def key_id_for(key: bytes) -> bytes:
    """The 16-byte id that names a network pseudonym key (from its public point)."""
    return crypto.oprf_key_id(crypto.oprf_public_key(key))


def blind(identifiers: bytes) -> tuple[bytes, Blinding]:
    """Client: the blinded point to send to the node, and the state to keep for finalize."""
    _check_identifiers(identifiers)
    scalar = crypto.random_scalar()
    return crypto.point_mul(scalar, _h1(identifiers)), Blinding(scalar, identifiers)


def evaluate(key: bytes, blinded_point: bytes) -> bytes:
    """Node: k * B for a client's blinded point B, after checking B."""
    return crypto.point_mul(key, _received_point("blinded point", blinded_point))


def finalize(blinding: Blinding, evaluated_point: bytes, key_id: bytes) -> bytes:
    """Client: unblind the node's answer and derive the 32-byte pseudonym under ``key_id``."""
    _check_key_id(key_id)
    evaluated = _received_point("evaluated point", evaluated_point)
    unblinded = crypto.point_mul(crypto.scalar_invert(blinding.scalar), evaluated)
    return _h2(key_id, blinding.identifiers, unblinded)


def direct(key: bytes, identifiers: bytes, key_id: bytes) -> bytes:
    """Node and tests: F(k, x) = H2(key id, x, k * H1(x)) without blinding."""
    _check_identifiers(identifiers)
    _check_key_id(key_id)
    if not crypto.constant_time_equal(key_id, key_id_for(key)):
        raise Malformed("key id does not name this pseudonym key")
    return _h2(key_id, identifiers, crypto.point_mul(key, _h1(identifiers)))


# --- key rotation ---------------------------------------------------------------------------


class KeyRing:
    """The network pseudonym keys a node holds, newest first (as pyca's MultiFernet).

    Outside a rotation the ring holds one key. ``rotate(new)`` puts a new key in front and
    keeps the previous one, so clients get evaluations under both and signals carry both
    pseudonyms; ``retire()`` ends the window by dropping every key but the newest.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not 1 <= len(keys) <= MAX_RING_KEYS:
            raise Malformed(f"a pseudonym key ring holds 1 to {MAX_RING_KEYS} keys")
        ids = tuple(key_id_for(k) for k in keys)  # also checks each key
        if len(set(ids)) != len(ids):
            raise Malformed("a pseudonym key ring must not hold a key twice")
        self._keys = tuple(keys)
        self._ids = ids

    def __repr__(self) -> str:
        return f"KeyRing(key_ids=[{', '.join(i.hex() for i in self._ids)}])"

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        """Ids of the keys, newest first."""
        return self._ids

    @property
    def current_key_id(self) -> bytes:
        return self._ids[0]

    def _key(self, key_id: bytes) -> bytes:
        for kid, key in zip(self._ids, self._keys, strict=True):
            if kid == key_id:
                return key
        raise UnknownKey(f"no pseudonym key with id {key_id.hex()}")

    def evaluate(self, blinded_point: bytes, key_id: bytes | None = None) -> bytes:
        """k * B under the named key (default: the newest); UnknownKey if not in the ring."""
        key = self._keys[0] if key_id is None else self._key(key_id)
        return evaluate(key, blinded_point)

    def evaluate_all(self, blinded_point: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """(key id, k * B) under every key of the ring, newest first."""
        _received_point("blinded point", blinded_point)
        return tuple((kid, evaluate(key, blinded_point))
                     for kid, key in zip(self._ids, self._keys, strict=True))

    def direct_all(self, identifiers: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """(key id, pseudonym) under every key of the ring, newest first."""
        return tuple((kid, direct(key, identifiers, kid))
                     for kid, key in zip(self._ids, self._keys, strict=True))

    def rotate(self, new_key: bytes) -> KeyRing:
        """A ring with ``new_key`` in front of the current key (older keys are dropped)."""
        return KeyRing((new_key, self._keys[0]))

    def retire(self) -> KeyRing:
        """End a rotation window: only the newest key remains."""
        return KeyRing(self._keys[:1])


def matches(a: Iterable[tuple[bytes, bytes]], b: Iterable[tuple[bytes, bytes]]) -> bool:
    """True iff two sets of (key id, pseudonym) share a key id with equal values.

    Pseudonyms under different keys are never compared: they are unrelated values.
    """
    by_key = dict(a)
    return any(kid in by_key and crypto.constant_time_equal(by_key[kid], value)
               for kid, value in b)
