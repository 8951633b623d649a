"""The ownership policy: every handling code and TLP label for every action, and its laws."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison_net.core.ownership import (
    Handling,
    Owner,
    OwnershipTag,
    PermittedAction,
    Tlp,
    at_least_as_strict,
)
from liaison_net.core.policy import REASONS, Action, Request, check_retag, decide, require
from liaison_net.errors import LimitExceeded, Malformed, PolicyRefused
from tests.core.factories import NOW, make_tag
from tests.core.strategies import NODES, tags, tightened

H = list(Handling)
T = [Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED]

# Expected outcome, written out by hand from DESIGN.md and docs/ownership.md, for a tag
# owned by nl, shared with nl/be/lu, every action permitted in advance, no consent.
# Rows: H0..H3. Columns: CLEAR GREEN AMBER AMBER+STRICT RED.
# "ok" allowed; "hc" handling_consent; "ao" tlp_own_organisation; "red" tlp_red.
CROSS_BORDER = {  # the actor on nl, the target on be
    Action.SEND: ["ok ok ok ok ok"] * 4,
    Action.RELAY: ["ok ok ok ok ok"] * 4,
    Action.DELIVER: ["ok ok ok ok ok"] * 4,
    Action.FORWARD: ["ok ok ok ao red", "ok ok ok ao red", "hc hc hc ao red", "hc hc hc ao red"],
}
SAME_ORGANISATION = {  # the actor and the target on be (evidence, retention, forward at home)
    Action.FORWARD: ["ok ok ok ok red", "ok ok ok ok red", "hc hc hc hc red", "hc hc hc hc red"],
    Action.EVIDENCE: ["ok ok ok ok red", "hc hc hc hc red", "hc hc hc hc red",
                      "hc hc hc hc red"],
    Action.RETAIN: ["ok ok ok ok ok"] * 4,
}
CODES = {"ok": "allowed", "hc": "handling_consent", "ao": "tlp_own_organisation",
         "red": "tlp_red"}


def _tag(handling: Handling, tlp: Tlp, **kw: object) -> OwnershipTag:
    return make_tag(handling=handling, tlp=tlp,
                    conditions="only for case 2026/117" if handling is Handling.H3 else "",
                    community="Benelux liaison network" if tlp is Tlp.GREEN else "", **kw)


def _cases(table: dict[Action, list[str]], actor: str, target: str):
    for action, rows in table.items():
        for h, row in zip(H, rows, strict=True):
            for t, cell in zip(T, row.split(), strict=True):
                yield pytest.param(action, h, t, actor, target, CODES[cell],
                                   id=f"{action.value}-{h.value}-{t.value}-{actor}>{target}")


ALL_CASES = [*_cases(CROSS_BORDER, "nl", "be"), *_cases(SAME_ORGANISATION, "be", "be")]


def test_table_covers_every_action_handling_and_tlp() -> None:
    actions = set(CROSS_BORDER) | set(SAME_ORGANISATION)
    assert actions == set(Action)
    assert len(ALL_CASES) == 7 * 4 * 5


@pytest.mark.parametrize(("action", "handling", "tlp", "actor", "target", "expected"), ALL_CASES)
def test_decision_table(action: Action, handling: Handling, tlp: Tlp, actor: str, target: str,
                        expected: str) -> None:
    tag = _tag(handling, tlp)
    decision = decide(tag, Request(action, NOW, actor, target))
    assert decision.rule == expected
    assert decision.allowed == (expected == "allowed")
    # A consent from the owner makes every refused action possible.
    assert decide(tag, Request(action, NOW, actor, target, consent=True)).allowed


@pytest.mark.parametrize("action", list(Action))
def test_retention_expired_refuses_everything_even_with_consent(action: Action) -> None:
    tag = make_tag()
    for consent in (False, True):
        decision = decide(tag, Request(action, tag.retain_until, "be", "be", consent=consent))
        assert decision.rule == "retention_expired"
    assert decide(tag, Request(action, tag.retain_until - 1, "nl" if action is Action.SEND
                               else "be", "be")).allowed


@pytest.mark.parametrize("action", [Action.SEND, Action.RELAY, Action.DELIVER, Action.FORWARD])
def test_share_with_excludes_de_nw(action: Action) -> None:
    """A Benelux-only tag never reaches DE-NW, for any action, at any layer."""
    tag = make_tag(share_with=frozenset({"nl", "be", "lu"}), tlp=Tlp.CLEAR)
    decision = decide(tag, Request(action, NOW, "nl", "de-nw"))
    assert (decision.allowed, decision.rule) == (False, "share_with")


def test_only_the_owner_sends_under_a_tag() -> None:
    tag = make_tag()
    assert decide(tag, Request(Action.SEND, NOW, "be", "nl")).rule == "not_owner"


@pytest.mark.parametrize(("action", "permission"), [(Action.FORWARD, PermittedAction.FORWARD),
                                                    (Action.EVIDENCE, PermittedAction.EVIDENCE)])
def test_permitted_actions_required(action: Action, permission: PermittedAction) -> None:
    tag = make_tag(permitted_actions=frozenset(PermittedAction) - {permission}, tlp=Tlp.CLEAR)
    assert decide(tag, Request(action, NOW, "be", "be")).rule == "not_permitted"
    assert decide(tag, Request(action, NOW, "be", "be", consent=True)).allowed


def test_require_raises_with_rule_code() -> None:
    tag = _tag(Handling.H2, Tlp.AMBER)
    with pytest.raises(PolicyRefused) as info:
        require(tag, Request(Action.FORWARD, NOW, "be", "lu"))
    assert info.value.code == "policy.handling_consent"
    assert info.value.http_status == 403
    assert "consent" in info.value.detail


def test_every_rule_has_a_reason() -> None:
    assert {"allowed", "retention_expired", "not_owner", "share_with", "tlp_own_organisation",
            "tlp_red", "handling_consent", "not_permitted", "relax_by_non_owner",
            # the provenance rules of core/tagflow.py
            "owner_not_signer", "original_missing", "original_mismatch",
            "consent_used"} == set(REASONS)


def _every_request(*tags_: OwnershipTag):
    """Every action, actor, target and consent, at times around each tag's retention end."""
    times = {NOW} | {t.retain_until + d for t in tags_ for d in (-1, 0)}
    for action in Action:
        for actor in NODES:
            for target in NODES:
                for consent in (False, True):
                    for now in times:
                        yield Request(action, now, actor, target, consent)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_policy_is_monotonic(data: st.DataObject) -> None:
    """A stricter tag never allows what a looser one refuses (every request checked)."""
    loose = data.draw(tags())
    strict = data.draw(tightened(loose))
    assert at_least_as_strict(strict, loose)
    for request in _every_request(loose, strict):
        if not decide(loose, request).allowed:
            assert not decide(strict, request).allowed, request


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_anyone_may_tighten_only_owner_may_relax(data: st.DataObject) -> None:
    loose = data.draw(tags())
    strict = data.draw(tightened(loose))
    assert check_retag(loose, strict, actor_is_owner=False).allowed
    if not at_least_as_strict(loose, strict):  # going back is a relaxation
        assert check_retag(strict, loose, actor_is_owner=False).rule == "relax_by_non_owner"
        assert check_retag(strict, loose, actor_is_owner=True).allowed


def test_owner_cannot_hand_the_tag_to_someone_else_by_relaxing() -> None:
    old = make_tag()
    new = make_tag(owner=Owner("be", "federal-police"), share_with=frozenset({"be", "nl"}))
    assert not check_retag(old, new, actor_is_owner=True).allowed


def test_over_long_tag_text_is_a_limit() -> None:
    with pytest.raises(LimitExceeded, match="longer than"):
        make_tag(purpose="x" * 300)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"handling": Handling.H3}, "conditions"),
        ({"conditions": "x"}, "only allowed with handling H3"),
        ({"tlp": Tlp.GREEN}, "community"),
        ({"community": "x"}, "only allowed with TLP:GREEN"),
        ({"share_with": frozenset()}, "at least one"),
        ({"share_with": frozenset({"be"})}, "owner's node"),
        ({"share_with": frozenset({"nl", "BE"})}, "share_with entry"),
        ({"purpose": " "}, "purpose"),
        ({"owner": Owner("nl", "unit\u202e")}, "control or format"),
        ({"owner": Owner("nl", "unit\x00")}, "control or format"),
        ({"retain_until": 0}, "retain_until"),
    ],
)
def test_invalid_tags_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(Malformed, match=message):
        make_tag(**overrides)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda w: w.pop("purpose"), "missing"),
        (lambda w: w.update(extra=1), "unknown"),
        (lambda w: w.update(handling="H9"), "handling"),
        (lambda w: w.update(tlp="amber"), "tlp"),
        (lambda w: w.update(share_with=["nl", "be"]), "sorted"),
        (lambda w: w.update(share_with=["be", "be", "nl"]), "sorted"),
        (lambda w: w.update(retain_until="soon"), "integer"),
        (lambda w: w["evaluation"].update(accuracy=True), "accuracy"),
        (lambda w: w["evaluation"].update(accuracy=5), "accuracy"),
        (lambda w: w["evaluation"].update(source="D"), "source"),
        (lambda w: w.update(permitted_actions=["teleport"]), "permitted action"),
    ],
)
def test_tag_wire_decoding_is_strict(change, message: str) -> None:
    wire = make_tag().to_wire()
    change(wire)
    with pytest.raises(Malformed, match=message):
        OwnershipTag.from_wire(wire)


@settings(max_examples=100, deadline=None)
@given(tag=tags())
def test_tag_wire_round_trip(tag: OwnershipTag) -> None:
    assert OwnershipTag.from_wire(tag.to_wire()) == tag


def test_policy_is_monotonic_over_the_whole_lattice() -> None:
    """Exhaustive companion to the property: every handling x TLP x permission pair."""
    perms = [frozenset(), frozenset({PermittedAction.FORWARD}),
             frozenset({PermittedAction.EVIDENCE}), frozenset(PermittedAction)]
    lattice = [_tag(h, t, permitted_actions=p) for h in H for t in T for p in perms]
    # GREEN's community and H3's conditions are the same everywhere, so pairs compare freely.
    requests = [Request(a, NOW, actor, target) for a in Action for actor in NODES
                for target in NODES]
    pairs = 0
    for loose in lattice:
        refused = [r for r in requests if not decide(loose, r).allowed]
        for strict in lattice:
            if strict is loose or not at_least_as_strict(strict, loose):
                continue
            pairs += 1
            for request in refused:
                assert not decide(strict, request).allowed, (loose, strict, request)
    assert pairs > 500
