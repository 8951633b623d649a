"""Fuzz the ownership tag (wire decoding, validation) and the policy that reads it.

Every node and client calls ``policy.decide`` with the same tag and its own request and
must get the same answer, so beyond "no untyped exception" this harness checks invariants
on tags and requests built with a FuzzedDataProvider:

* ``decide`` is total (never raises) and deterministic (same answer again, and for a copy
  of the tag that went through the wire form); ``require`` agrees with it;
* the hard rules hold for every tag: nothing after retention, SEND only by the owner and,
  without an owner's consent, nothing to a node outside share_with, no FORWARD/EVIDENCE under
  TLP:RED or H3, none outside the actor's organisation under AMBER+STRICT, none without the
  advance permission;
* monotonicity: a tag tightened from another, or a neighbour (some fields changed either
  way) that ``at_least_as_strict`` calls stricter, never allows what the looser one refuses;
  ``check_retag`` lets anyone make exactly those changes and no others.

Mode byte (see ``fuzz.seeds``): the tag is built from the provider, or decoded from wire
bytes (u16 length, bytes) with the rest of the input driving the requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import sys

import atheris

# Instrument liaison_net only when running as the fuzzer; imported by pytest it stays plain.
with (atheris.instrument_imports(include=["liaison_net"]) if __name__ == "__main__"
      else contextlib.nullcontext()):
    from fuzz import seeds
    from liaison_net.core import codec
    from liaison_net.core.limits import DAY_MS
    from liaison_net.core.ownership import (
        Evaluation,
        Handling,
        InformationAccuracy,
        Owner,
        OwnershipTag,
        PermittedAction,
        SourceReliability,
        Tlp,
        at_least_as_strict,
    )
    from liaison_net.core.policy import (
        NEEDS_PERMISSION,
        REASONS,
        Action,
        Decision,
        Request,
        check_retag,
        decide,
        require,
    )
    from liaison_net.errors import LiaisonError, PolicyRefused

_NODES = [*seeds.NODES, "fr", "nl-kmar"]
_TEXTS = ["cross-border drug trafficking investigation", "cid-limburg", "benelux-ct-desks",
          "only for case 2026/117; ask before any use"]
_JUDICIAL = (Action.FORWARD, Action.EVIDENCE)
_MAX_TAG_BYTES = 16 * 1024


def _node(fdp: atheris.FuzzedDataProvider) -> str:
    """Mostly a real node id, sometimes any text (tags must refuse it, decide must not care)."""
    if fdp.ConsumeIntInRange(0, 15) == 0:
        return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 20)))
    return str(fdp.PickValueInList(_NODES))


def _text(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeIntInRange(0, 7) == 0:
        return str(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300)))
    return str(fdp.PickValueInList(_TEXTS))


def _subset(fdp: atheris.FuzzedDataProvider, items: list[str]) -> frozenset[str]:
    return frozenset(i for i in items if fdp.ConsumeBool())


def _build_tag(fdp: atheris.FuzzedDataProvider) -> OwnershipTag:
    """A tag from the provider; usually valid, refused with a typed error when not."""
    owner = Owner(_node(fdp), _text(fdp))
    handling = fdp.PickValueInList(list(Handling))
    tlp = fdp.PickValueInList(list(Tlp))
    share = _subset(fdp, _NODES) | ({owner.node} if fdp.ConsumeIntInRange(0, 15) else set())
    actions = frozenset(a for a in PermittedAction if fdp.ConsumeBool())
    retain = seeds.NOW + fdp.ConsumeIntInRange(-DAY_MS, 400 * DAY_MS)
    if fdp.ConsumeIntInRange(0, 31) == 0:
        retain = fdp.ConsumeInt(8)
    conditions = _text(fdp) if handling is Handling.H3 or fdp.ConsumeIntInRange(0, 15) == 0 else ""
    community = _text(fdp) if tlp is Tlp.GREEN or fdp.ConsumeIntInRange(0, 15) == 0 else ""
    return OwnershipTag(
        owner=owner,
        handling=handling,
        tlp=tlp,
        evaluation=Evaluation(fdp.PickValueInList(list(SourceReliability)),
                              fdp.PickValueInList(list(InformationAccuracy))),
        share_with=frozenset(share),
        permitted_actions=actions,
        purpose=_text(fdp),
        retain_until=retain,
        conditions=conditions,
        community=community,
    ).validate()


def _tighten(fdp: atheris.FuzzedDataProvider, loose: OwnershipTag) -> OwnershipTag:
    """A tag that restricts ``loose`` further on every axis the provider picks."""
    handling = fdp.PickValueInList([h for h in Handling if h.rank >= loose.handling.rank])
    tlp = fdp.PickValueInList([t for t in Tlp if t.rank >= loose.tlp.rank])
    conditions = ("" if handling is not Handling.H3 else loose.conditions
                  if loose.handling is Handling.H3 else _text(fdp))
    community = ("" if tlp is not Tlp.GREEN else loose.community
                 if loose.tlp is Tlp.GREEN else _text(fdp))
    share = frozenset(n for n in loose.share_with if n == loose.owner.node or fdp.ConsumeBool())
    return dataclasses.replace(
        loose,
        handling=handling,
        tlp=tlp,
        share_with=share,
        permitted_actions=frozenset(a for a in loose.permitted_actions if fdp.ConsumeBool()),
        retain_until=loose.retain_until - fdp.ConsumeIntInRange(0, 30 * DAY_MS),
        conditions=conditions,
        community=community,
    ).validate()


def _neighbour(fdp: atheris.FuzzedDataProvider, tag: OwnershipTag) -> OwnershipTag:
    """``tag`` with some fields changed either way: often at least as strict, often not, so
    both ``at_least_as_strict`` and the monotonicity it promises are probed near the edge."""
    def keep() -> bool:
        return bool(fdp.ConsumeBool())

    handling = tag.handling if keep() else fdp.PickValueInList(list(Handling))
    tlp = tag.tlp if keep() else fdp.PickValueInList(list(Tlp))
    return dataclasses.replace(
        tag,
        owner=tag.owner if fdp.ConsumeIntInRange(0, 7) else Owner(_node(fdp), tag.owner.unit),
        handling=handling,
        tlp=tlp,
        share_with=tag.share_with if keep() else _subset(fdp, _NODES) | {tag.owner.node},
        permitted_actions=tag.permitted_actions if keep() else frozenset(
            a for a in PermittedAction if fdp.ConsumeBool()),
        retain_until=tag.retain_until + (0 if keep() else fdp.ConsumeIntInRange(-DAY_MS, DAY_MS)),
        conditions=("" if handling is not Handling.H3 else tag.conditions
                    if tag.conditions and keep() else _text(fdp)),
        community=("" if tlp is not Tlp.GREEN else tag.community
                   if tag.community and keep() else _text(fdp)),
    ).validate()


def _request(fdp: atheris.FuzzedDataProvider, tag: OwnershipTag) -> Request:
    offset = fdp.PickValueInList([0, -1, 1, -DAY_MS])
    now = fdp.PickValueInList([seeds.NOW, tag.retain_until + offset, fdp.ConsumeInt(8)])
    return Request(fdp.PickValueInList(list(Action)), now, _node(fdp), _node(fdp),
                   fdp.ConsumeBool())


def _check_decision(tag: OwnershipTag, copy: OwnershipTag, request: Request) -> Decision:
    """Totality, determinism, agreement of ``require``, and the rules no tag can relax."""
    decision = decide(tag, request)  # total: any exception here is a finding
    assert decision == decide(tag, request) == decide(copy, request), "decide not deterministic"
    assert decision.rule in REASONS and decision.allowed == (decision.rule == "allowed")
    try:
        assert require(tag, request) == decision and decision.allowed
    except PolicyRefused as exc:
        assert not decision.allowed and exc.code == decision.code
    if not decision.allowed:
        return decision
    action, consent = request.action, request.consent
    assert request.now < tag.retain_until, "allowed after retain_until"
    assert action is not Action.SEND or request.actor_node == tag.owner.node, "non-owner sent"
    if consent:
        return decision
    assert request.target_node in tag.share_with, "reached a node outside share_with"
    if action in _JUDICIAL:
        assert tag.tlp is not Tlp.RED, "TLP:RED information reached beyond the recipients"
        assert tag.handling is not Handling.H3, "H3 information used without consent"
        assert tag.tlp is not Tlp.AMBER_STRICT or request.target_node == request.actor_node, (
            "AMBER+STRICT information left the acting organisation")
        assert NEEDS_PERMISSION[action] in tag.permitted_actions, "not permitted in advance"
    return decision


def _wire_tag(data: bytes) -> tuple[OwnershipTag, bytes]:
    """POLICY_WIRE: decode the tag's wire bytes; it must re-encode to them exactly."""
    (length,) = struct.unpack(">H", data[:2].rjust(2, b"\x00"))
    raw = data[2:2 + length]
    tag = OwnershipTag.from_wire(codec.unpack(raw, what="tag", max_bytes=_MAX_TAG_BYTES))
    assert codec.pack(tag.to_wire()) == raw, "tag decoded from non-canonical bytes"
    return tag, data[2 + length:]


def test_one_input(data: bytes) -> None:
    """One fuzz input: a mode byte, then provider bytes (or tag wire bytes, then those)."""
    if not data:
        return
    try:
        if data[0] % seeds.POLICY_MODES == seeds.POLICY_WIRE:
            tag, rest = _wire_tag(data[1:])
            fdp = atheris.FuzzedDataProvider(rest)
        else:
            fdp = atheris.FuzzedDataProvider(data[1:])
            tag = _build_tag(fdp)
    except LiaisonError:
        return
    copy = OwnershipTag.from_wire(codec.unpack(codec.pack(tag.to_wire()), what="tag",
                                               max_bytes=_MAX_TAG_BYTES))
    assert copy == tag, "a valid tag does not survive its wire form"
    assert check_retag(tag, tag, actor_is_owner=False).allowed, "retag to itself refused"
    stricter: list[OwnershipTag] = []
    with contextlib.suppress(LiaisonError):
        strict = _tighten(fdp, tag)
        assert at_least_as_strict(strict, tag), "a tightened tag is not at least as strict"
        assert check_retag(tag, strict, actor_is_owner=False).allowed, "tightening refused"
        stricter.append(strict)
    with contextlib.suppress(LiaisonError):
        other = _neighbour(fdp, tag)
        retag = check_retag(tag, other, actor_is_owner=False)
        assert retag.allowed == at_least_as_strict(other, tag), "check_retag disagrees"
        by_owner = check_retag(tag, other, actor_is_owner=True)
        assert by_owner.allowed == (retag.allowed or other.owner == tag.owner), (
            "the owner may relax its own tag, and only keep the owner")
        if retag.allowed:
            stricter.append(other)
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        request = _request(fdp, tag)
        decision = _check_decision(tag, copy, request)
        for strict in stricter:
            allowed = _check_decision(strict, strict, request).allowed
            assert decision.allowed or not allowed, "a stricter tag allows what the looser refuses"


def main(argv: list[str] | None = None) -> None:
    """Run libFuzzer over ``test_one_input`` (argv: corpus dirs and -flags, as libFuzzer's)."""
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
