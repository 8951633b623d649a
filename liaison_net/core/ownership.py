"""The ownership tag: what the owner of a piece of information allows others to do with it.

Modelled on Europol SIENA handling codes and evaluation, and on FIRST TLP 2.0 (see
docs/ownership.md). The tag travels in the signed, unencrypted header, so every node can
check it and none can change it. This module defines the tag, its strict wire form, and the
"at least as strict" order that makes tightening free and relaxing an owner's privilege.
What the tag *allows* is decided in ``policy``, from tables.
"""

from __future__ import annotations

import enum
import itertools
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from liaison_net.core import codec
from liaison_net.core.frozen import build
from liaison_net.core.ids import are_node_ids, check_node_id
from liaison_net.core.limits import DEFAULT_LIMITS, Limits
from liaison_net.errors import LimitExceeded, Malformed

E = TypeVar("E", bound=enum.Enum)


class Handling(enum.Enum):
    """SIENA handling codes, in increasing order of restriction."""

    H0 = "H0"  # only for preventing and combating crime under the applicable law
    H1 = "H1"  # not to be disclosed in judicial proceedings without the provider's permission
    H2 = "H2"  # not to be disseminated without the provider's permission
    H3 = "H3"  # other restrictions, stated in `conditions`

    @property
    def rank(self) -> int:
        return _HANDLING_ORDER.index(self)


_HANDLING_ORDER = [Handling.H0, Handling.H1, Handling.H2, Handling.H3]


class Tlp(enum.Enum):
    """FIRST Traffic Light Protocol 2.0 labels, in increasing order of restriction."""

    CLEAR = "CLEAR"
    GREEN = "GREEN"  # within a named community
    AMBER = "AMBER"  # recipients' organisations, need to know
    AMBER_STRICT = "AMBER+STRICT"  # recipients' own organisation only
    RED = "RED"  # named recipients only

    @property
    def rank(self) -> int:
        return _TLP_ORDER.index(self)


_TLP_ORDER = [Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED]


class SourceReliability(enum.Enum):
    """The 4x4 evaluation, first axis: how reliable is the source."""

    A = "A"  # no doubt about authenticity, trustworthiness and competence
    B = "B"  # source from whom information received has in most instances proved reliable
    C = "C"  # source from whom information received has in most instances proved unreliable
    X = "X"  # reliability cannot be assessed


class InformationAccuracy(enum.IntEnum):
    """The 4x4 evaluation, second axis: how accurate is the information."""

    KNOWN_TRUE = 1  # known to be true without reservation
    KNOWN_TO_SOURCE = 2  # known personally to the source but not to the official passing it
    NOT_KNOWN_CORROBORATED = 3  # not known personally to the source, corroborated
    NOT_KNOWN = 4  # not known personally to the source, cannot be corroborated


class PermittedAction(enum.Enum):
    """Actions the owner grants in advance, beyond reading by the addressed recipients."""

    FORWARD = "forward"  # pass on to another officer (still within TLP and share_with)
    EVIDENCE = "evidence"  # use as evidence in judicial proceedings


@dataclass(frozen=True)
class Owner:
    """The originating service: its node and unit. Only it may relax the tag."""

    node: str
    unit: str

    def __str__(self) -> str:
        return f"{self.node}:{self.unit}"


@dataclass(frozen=True)
class Evaluation:
    source: SourceReliability
    accuracy: InformationAccuracy

    def __str__(self) -> str:
        return f"{self.source.value}{self.accuracy.value}"


@dataclass(frozen=True)
class OwnershipTag:
    owner: Owner
    handling: Handling
    tlp: Tlp
    evaluation: Evaluation
    share_with: frozenset[str]
    permitted_actions: frozenset[PermittedAction]
    purpose: str
    retain_until: int  # ms since the epoch; content is purged at this time
    conditions: str = ""  # required for H3, and only then
    community: str = ""  # required for TLP:GREEN, and only then

    def validate(self, limits: Limits = DEFAULT_LIMITS) -> OwnershipTag:
        """Check the rules a tag must satisfy on its own; return self for chaining."""
        check_node_id(self.owner.node, what="tag owner node")
        _check_text("tag owner unit", self.owner.unit, limits.max_text_chars, required=True)
        _check_text("tag purpose", self.purpose, limits.max_text_chars, required=True)
        if not self.share_with:
            raise Malformed("tag share_with must name at least one node")
        if len(self.share_with) > limits.max_share_with:
            raise LimitExceeded(f"tag share_with names more than {limits.max_share_with} nodes")
        for node in self.share_with:
            check_node_id(node, what="tag share_with entry")
        if self.owner.node not in self.share_with:
            raise Malformed("tag share_with must include the owner's node")
        if self.handling is Handling.H3:
            _check_text("tag conditions", self.conditions, limits.max_conditions_chars, True)
        elif self.conditions:
            raise Malformed("tag conditions are only allowed with handling H3")
        if self.tlp is Tlp.GREEN:
            _check_text("tag community", self.community, limits.max_text_chars, required=True)
        elif self.community:
            raise Malformed("tag community is only allowed with TLP:GREEN")
        if not isinstance(self.retain_until, int) or isinstance(self.retain_until, bool):
            raise Malformed("tag retain_until must be an integer (ms)")
        if not 0 < self.retain_until < 1 << 53:
            raise Malformed("tag retain_until out of range")
        return self

    def to_wire(self) -> dict[str, Any]:
        return {
            "owner": {"node": self.owner.node, "unit": self.owner.unit},
            "handling": self.handling.value,
            "tlp": self.tlp.value,
            "evaluation": {"source": self.evaluation.source.value,
                           "accuracy": int(self.evaluation.accuracy)},
            "share_with": sorted(self.share_with),
            "permitted_actions": sorted(a.value for a in self.permitted_actions),
            "purpose": self.purpose,
            "retain_until": self.retain_until,
            "conditions": self.conditions,
            "community": self.community,
        }

    @classmethod
    def from_wire(cls, value: object, limits: Limits = DEFAULT_LIMITS) -> OwnershipTag:
        """Strict: exact field set, exact types, sorted unique lists, valid enums."""
        d = (value if type(value) is dict and value.keys() == _TAG_FIELDS
             else codec.exact_map("tag", value, _TAG_FIELDS))
        owner, evaluation = d["owner"], d["evaluation"]
        if type(owner) is not dict or owner.keys() != _OWNER_FIELDS:
            owner = codec.exact_map("tag owner", owner, _OWNER_FIELDS)
        if type(evaluation) is not dict or evaluation.keys() != _EVALUATION_FIELDS:
            evaluation = codec.exact_map("tag evaluation", evaluation, _EVALUATION_FIELDS)
        share = _sorted_unique_strs("tag share_with", d["share_with"])
        actions = _sorted_unique_strs("tag permitted_actions", d["permitted_actions"])
        accuracy = evaluation["accuracy"]
        if not isinstance(accuracy, int) or isinstance(accuracy, bool):
            raise Malformed("tag evaluation accuracy must be an integer 1-4")
        # The checks of ``_str``, ``_enum`` and ``_int``, in the same order, inline: the
        # usual field costs a type test and a dict lookup (a miss names the fault there).
        node, unit = owner["node"], owner["unit"]
        if type(node) is not str or type(unit) is not str:
            _str("tag owner node", node)
            _str("tag owner unit", unit)
        handling = _HANDLINGS.get(d["handling"]) if type(d["handling"]) is str else None
        if handling is None:
            handling = _enum("tag handling", Handling, d["handling"])
        tlp = _TLPS.get(d["tlp"]) if type(d["tlp"]) is str else None
        if tlp is None:
            tlp = _enum("tag tlp", Tlp, d["tlp"])
        source = (_SOURCES.get(evaluation["source"]) if type(evaluation["source"]) is str
                  else None)
        if source is None:
            source = _enum("tag evaluation source", SourceReliability, evaluation["source"])
        tag = build(
            cls,
            owner=build(Owner, node=node, unit=unit),
            handling=handling,
            tlp=tlp,
            evaluation=_evaluation(source, accuracy),
            share_with=frozenset(share),
            permitted_actions=frozenset(
                _enum("tag permitted action", PermittedAction, a) for a in actions
            ) if actions else _NO_ACTIONS,
            purpose=_str("tag purpose", d["purpose"]),
            retain_until=_int("tag retain_until", d["retain_until"]),
            conditions=_str("tag conditions", d["conditions"]),
            community=_str("tag community", d["community"]),
        )
        return tag.validate(limits)


class _OwnerWire(msgspec.Struct, forbid_unknown_fields=True):
    node: str
    unit: str


class _EvaluationWire(msgspec.Struct, forbid_unknown_fields=True):
    accuracy: int
    source: str


class UsualTagWire(msgspec.Struct, forbid_unknown_fields=True):
    """The usual tag's wire schema for msgspec's typed C decoder (a header's fast decoding,
    ``envelope._decode_usual_header``): each map's fields in canonical (sorted) order, so
    that its encoder writes them as ``codec.pack`` does, each of its exact type (``strict``:
    no int for a float, no str for bytes); ``usual_tag`` checks the values."""

    community: str
    conditions: str
    evaluation: _EvaluationWire
    handling: Handling
    owner: _OwnerWire
    permitted_actions: list[str]
    purpose: str
    retain_until: Annotated[int, Meta(gt=0, lt=1 << 53)]
    share_with: Annotated[list[str], Meta(min_length=1)]
    tlp: Tlp


def usual_tag(wire: UsualTagWire, limits: Limits = DEFAULT_LIMITS) -> OwnershipTag | None:
    """``OwnershipTag.from_wire`` of the same map for the usual tag, else None (then
    ``from_wire`` decides and names the fault). Usual: every field of its exact type and a
    known value (``UsualTagWire``, checked by msgspec), the node ids checked before, text
    printable ASCII. It accepts nothing ``from_wire`` refuses and gives the same tag
    (tests/core/test_header_fastpath.py, tests/core/test_decode_fastpath.py).

    A desk sends many envelopes under one tag but for ``retain_until`` (now + its retention
    period), so what the checks found about the rest is remembered (``_TAG_FACTS``, keyed by
    those fields' values): the text printable, the share list sorted, unique and known,
    the evaluation and the actions known, and the objects built from them (immutable,
    shared by the tags that name them). Pure facts about the values; the limits, which
    depend on the node's ``Limits``, are checked on every call."""
    owner, evaluation, share, actions = (wire.owner, wire.evaluation, wire.share_with,
                                         wire.permitted_actions)
    unit, purpose, conditions, community = (owner.unit, wire.purpose, wire.conditions,
                                            wire.community)
    # Every item is an exact str or int (msgspec's typed decoding): hashable, and equal
    # only to the same value. None separates the two lists (no node id or action is None).
    key = (owner.node, unit, purpose, conditions, community, evaluation.source,
           evaluation.accuracy, *share, None, *actions)
    facts = _TAG_FACTS.get(key)
    if facts is None:
        facts = _tag_facts(wire)
        if facts is None:
            return None
        if (len(key) <= 32 and len(unit) + len(purpose) + len(conditions) + len(community)
                <= _MAX_REMEMBERED_TEXT):
            if len(_TAG_FACTS) >= _MAX_TAG_FACTS:
                _TAG_FACTS.clear()  # full: start again, so that no past tags keep it
            _TAG_FACTS[key] = facts
    owner_, evaluation_, share_with, permitted, conditions_ok, community_ok = facts
    max_chars, handling, tlp = limits.max_text_chars, wire.handling, wire.tlp
    if (len(unit) > max_chars or len(purpose) > max_chars
            or len(share) > limits.max_share_with):
        return None
    # H3 and GREEN: their text required (and printable: facts), else empty.
    if handling is _H3:
        if not conditions_ok or len(conditions) > limits.max_conditions_chars:
            return None
    elif conditions:
        return None
    if tlp is _GREEN:
        if not community_ok or len(community) > max_chars:
            return None
    elif community:
        return None
    return build(OwnershipTag, owner=owner_, handling=handling, tlp=tlp,
                 evaluation=evaluation_, share_with=share_with,
                 permitted_actions=permitted, purpose=purpose,
                 retain_until=wire.retain_until, conditions=conditions,
                 community=community)


# What ``usual_tag`` found about a tag's fields but ``retain_until``, limits aside: the
# owner, the evaluation, the share list's set and the actions' set built from them, and
# whether the conditions and the community are printable and not blank (required with H3
# and TLP:GREEN). A plain tuple: built on every miss, unpacked on every hit.
_TagFacts = tuple[Owner, Evaluation, frozenset[str], frozenset[PermittedAction], bool, bool]


def _tag_facts(wire: UsualTagWire) -> _TagFacts | None:
    """The checks of the usual tag that do not depend on ``Limits``, else None."""
    owner, share = wire.owner, wire.share_with
    node, unit, purpose = owner.node, owner.unit, wire.purpose
    # Required text (``_check_text``): printable ASCII here, not only spaces; and the
    # share list (``_sorted_unique_strs`` and ``validate``): sorted, unique, known node ids.
    if (not unit.isascii() or not unit.isprintable() or unit.isspace() or not unit
            or not purpose.isascii() or not purpose.isprintable() or purpose.isspace()
            or not purpose or not are_node_ids(share) or share != sorted(set(share))
            or node not in share):
        return None
    evaluation = wire.evaluation
    try:  # a miss: not the usual tag
        found = _EVALUATIONS_ON_WIRE[evaluation.source, evaluation.accuracy]
        permitted = _ACTION_SETS[tuple(wire.permitted_actions)]  # sorted, unique, known
    except KeyError:
        return None
    conditions, community = wire.conditions, wire.community
    return (build(Owner, node=node, unit=unit), found, frozenset(share), permitted,
            conditions != "" and _usual_text(conditions, _NO_BOUND),
            community != "" and _usual_text(community, _NO_BOUND))


# Bounded: a network's desks use a few tags; when full it is emptied and fills again with
# the tags in use (kept full, the first 512 tags seen, a year's cases or a peer's junk,
# would keep every later tag out until a restart: review16e). Only keys of bounded size:
# at most 32 items and _MAX_REMEMBERED_TEXT characters of text (node ids and actions are
# short by their own rules).
_TAG_FACTS: dict[tuple[object, ...], _TagFacts] = {}
_MAX_TAG_FACTS = 512
_MAX_REMEMBERED_TEXT = 1024
_NO_BOUND = 1 << 62  # the text's length is checked against the limits on every call


def _usual_text(value: object, max_chars: int) -> bool:
    """What ``_check_text`` accepts as required text, when it is printable ASCII."""
    return (type(value) is str and len(value) <= max_chars and value.isascii()
            and value.isprintable() and not value.isspace() and value != "")


# Each tag enum's values to its members, for ``_enum``'s lookup without ``Enum.__call__``.
_MEMBERS: dict[type[enum.Enum], dict[object, enum.Enum]] = {
    cls: {m.value: m for m in cls}
    for cls in (Handling, Tlp, SourceReliability, InformationAccuracy, PermittedAction)
}

_HANDLINGS = {m.value: m for m in Handling}
_TLPS = {m.value: m for m in Tlp}
_SOURCES = {m.value: m for m in SourceReliability}
_ACTIONS = {m.value: m for m in PermittedAction}
_EVALUATIONS = {(s, int(a)): Evaluation(s, a) for s in SourceReliability
                for a in InformationAccuracy}
_NO_ACTIONS: frozenset[PermittedAction] = frozenset()
# For ``usual_tag``: the evaluations by their wire values (no enum hashed per tag), and
# every sorted list of distinct actions to its set.
_EVALUATIONS_ON_WIRE = {(s.value, a): e for (s, a), e in _EVALUATIONS.items()}
_ACTION_SETS = {tuple(sorted(a.value for a in subset)): frozenset(subset)
                for subset in ({a for a, bit in zip(PermittedAction, bits, strict=True) if bit}
                               for bits in itertools.product((0, 1),
                                                             repeat=len(PermittedAction)))}

_OWNER_FIELDS = {"node", "unit"}
_EVALUATION_FIELDS = {"source", "accuracy"}
_TAG_FIELDS = {
    "owner", "handling", "tlp", "evaluation", "share_with", "permitted_actions",
    "purpose", "retain_until", "conditions", "community",
}
# Members as globals for ``usual_tag``: ``Tlp.GREEN`` goes through the enum class's
# ``__getattr__`` hook (Python 3.11), ten times a global's cost.
_H3, _GREEN = Handling.H3, Tlp.GREEN


def at_least_as_strict(new: OwnershipTag, old: OwnershipTag) -> bool:
    """True when ``new`` allows nothing that ``old`` refuses: a tightening (or equal).

    Owner, evaluation and purpose are facts about the information, not restrictions: a
    tightening keeps them. Conditions and community may only be introduced by the step
    that introduces H3 or GREEN.
    """
    if new.owner != old.owner or new.evaluation != old.evaluation or new.purpose != old.purpose:
        return False
    if new.handling.rank < old.handling.rank or new.tlp.rank < old.tlp.rank:
        return False
    if not new.share_with <= old.share_with:
        return False
    if not new.permitted_actions <= old.permitted_actions:
        return False
    if new.retain_until > old.retain_until:
        return False
    if old.handling is Handling.H3 and new.conditions != old.conditions:
        return False
    return not (old.tlp is Tlp.GREEN and new.tlp is Tlp.GREEN
                and new.community != old.community)


# --- strict field helpers -------------------------------------------------------------------


def _str(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{what} must be a string")
    return value


def _int(what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed(f"{what} must be an integer")
    return value


def _check_text(what: str, value: object, max_chars: int, required: bool) -> None:
    if not isinstance(value, str):
        raise Malformed(f"{what} must be a string")
    if required and not value.strip():
        raise Malformed(f"{what} must not be empty")
    if len(value) > max_chars:
        raise LimitExceeded(f"{what} is longer than {max_chars} characters")
    # Control and format characters (C0, DEL, C1, bidi overrides) could make what an
    # officer sees differ from what was signed. Printable ASCII has none (in ASCII only
    # C0 and DEL are Cc and nothing is Cf), so the per-character walk is for the rest.
    if value.isascii() and value.isprintable():
        return
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" for c in value):
        raise Malformed(f"{what} contains control or format characters")


def _sorted_unique_strs(what: str, value: object) -> list[str]:
    if type(value) is list and _STR.issuperset(map(type, value)) and value == sorted(set(value)):
        return value  # the usual list, checked in C; anything else is named below
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Malformed(f"{what} must be a list of strings")
    if value != sorted(set(value)):
        raise Malformed(f"{what} must be sorted and without duplicates")
    return value


_STR = frozenset({str})


def _evaluation(source: SourceReliability, accuracy: int) -> Evaluation:
    """The 16 evaluations are made once; a 17th accuracy goes through ``_enum``'s error."""
    found = _EVALUATIONS.get((source, accuracy)) if type(accuracy) is int else None
    if found is not None:
        return found
    return Evaluation(source, _enum("tag evaluation accuracy", InformationAccuracy, accuracy))


def _enum(what: str, cls: type[E], value: object) -> E:
    # The member table is the dict ``cls(value)`` looks in first; a miss or an unhashable
    # value goes through ``cls(value)`` itself, so the answer and the error are the same.
    member = _MEMBERS.get(cls, {}).get(value) if isinstance(value, str | int) else None
    if member is not None:
        return member  # type: ignore[return-value]  # the table of cls holds cls members
    try:
        return cls(value)
    except (ValueError, TypeError) as exc:
        allowed = ", ".join(str(m.value) for m in cls)
        raise Malformed(f"{what} must be one of {allowed}, got {value!r:.40}") from exc
