"""The per-envelope forms of the policy decide exactly as the tables read straight.

``policy.decide_for`` and ``tagflow.check`` look the tables up by the members' values (a
cheaper hash than ``Enum.__hash__``) and skip what cannot refuse. The references below are
the straightforward readings they replaced, kept here: for random tags, requests, senders,
recipients, kinds and layers, both must give the same decision, or the same refusal code.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Collection

from hypothesis import event, given, settings
from hypothesis import strategies as st

from liaison_net.core import restriction
from liaison_net.core.envelope import Header, Kind
from liaison_net.core.ids import node_of, node_principal
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import Owner, OwnershipTag, Tlp
from liaison_net.core.policy import (
    HANDLING_NEED,
    NEEDS_PERMISSION,
    TLP_REACH,
    Action,
    Decision,
    Need,
    Reach,
    Request,
    decide,
    decide_for,
)
from liaison_net.core.retention import make_skeleton
from liaison_net.core.signers import require_may_sign
from liaison_net.core.tagflow import (
    FORWARD_TARGETS,
    LAYER_ACTIONS,
    Flow,
    Layer,
    _Actor,
    _consent,
    _Targets,
    check,
    provenance,
    verify_original,
)
from liaison_net.errors import LiaisonError, PolicyRefused
from tests.core.factories import NOW, Officer, seal_from
from tests.core.strategies import NODES, tags

PEOPLE = [Officer("nl/jdevries"), Officer("be/mpeeters"), Officer("lu/cschmit"),
          Officer("de-nw/kmueller"), Officer(node_principal("nl"))]
KEYS = {o.signing.key_id: o.signer for o in PEOPLE}
CARDS = {o.id: o.signing.public for o in PEOPLE}


def reference_decide(tag: OwnershipTag, request: Request) -> Decision:
    """``policy.decide`` as it read before the value-keyed tables."""
    action = request.action
    if request.now >= tag.retain_until:
        return Decision(False, "retention_expired")
    if action is Action.SEND and request.actor_node != tag.owner.node:
        return Decision(False, "not_owner")
    if request.consent:
        return Decision(True, "allowed")
    reach = TLP_REACH[action][tag.tlp]
    if reach is Reach.NOBODY:
        return Decision(False, "tlp_red")
    if reach is Reach.OWN_ORGANISATION and request.target_node != request.actor_node:
        return Decision(False, "tlp_own_organisation")
    if request.target_node not in tag.share_with:
        return Decision(False, "share_with")
    if HANDLING_NEED[action][tag.handling] is Need.CONSENT:
        return Decision(False, "handling_consent")
    permission = NEEDS_PERMISSION[action]
    if permission is not None and permission not in tag.permitted_actions:
        return Decision(False, "not_permitted")
    return Decision(True, "allowed")


def _ref_targets(header: Header, which: _Targets, here: str) -> Collection[str]:
    nodes = header.recipient_nodes
    if which is _Targets.RECIPIENTS:
        return nodes
    if which is _Targets.REMOTE:
        return nodes - {here}
    return {here}


def _ref_require(header: Header, request: Request) -> None:
    decision = reference_decide(header.tag, request)
    if not decision.allowed:
        raise PolicyRefused("refused", code=decision.code)


def reference_check(header: Header, *, layer: Layer, here: str, now: int) -> Flow:
    """``tagflow.check`` as it read before: enum-keyed tables, a ``Request`` per target."""
    require_may_sign(header.sender, header.kind)
    originals = provenance(header, KEYS.get)
    consent, digest = None, None
    if restriction.is_update(header):
        if header.original is None:
            raise PolicyRefused("no original", code="policy.original_missing")
        original = verify_original(header.original, KEYS.get)
        restriction.check_update(header, original)
        return Flow((original,), None, None)
    if header.kind is Kind.MESSAGE and header.ref is not None:
        if header.consent is not None:
            consent = _consent(header, CARDS.get, now=now if layer is Layer.ORIGIN else None)
            digest = hashlib.sha256(header.consent).digest()
        actor = node_of(header.sender)
        for recipient in header.recipients:
            if recipient.node not in _ref_targets(header, FORWARD_TARGETS[layer], here):
                continue
            covered = consent is not None and consent.covers(recipient.officer)
            _ref_require(header, Request(Action.FORWARD, now, actor, recipient.node, covered))
    else:
        for action, who, which in LAYER_ACTIONS[layer]:
            actor = node_of(header.sender) if who is _Actor.SENDER else here
            for node in sorted(_ref_targets(header, which, here)):
                _ref_require(header, Request(action, now, actor, node))
    return Flow(originals, consent, digest)


def _owned_by(tag: OwnershipTag, node: str, recipients: list[Officer],
              data: st.DataObject) -> OwnershipTag:
    """``tag`` as ``node``'s own, often shared with every recipient's node."""
    share = tag.share_with | {node}
    if data.draw(st.booleans(), label="shared with the recipients"):
        share |= {r.id.split("/")[0] for r in recipients}
    return OwnershipTag(**{**tag.__dict__, "owner": Owner(node, tag.owner.unit),
                           "share_with": frozenset(share)}).validate()


def _outcome(run: object) -> object:
    try:
        return run()  # type: ignore[operator]
    except LiaisonError as exc:
        return type(exc), exc.code


@settings(max_examples=400, deadline=None)
@given(tag=tags(), action=st.sampled_from(list(Action)), consent=st.booleans(),
       actor=st.sampled_from(NODES), target=st.sampled_from(NODES),
       late=st.sampled_from([0, 4 * DAY_MS, 400 * DAY_MS]))
def test_decide_for_decides_as_the_tables_read_straight(
        tag: OwnershipTag, action: Action, consent: bool, actor: str, target: str,
        late: int) -> None:
    request = Request(action, NOW + late, actor, target, consent)
    expected = reference_decide(tag, request)
    assert decide(tag, request) == expected
    assert decide_for(tag, action, now=NOW + late, actor_node=actor, target_node=target,
                      consent=consent) == expected


def test_every_combination_of_action_tlp_and_handling_decides_as_the_tables() -> None:
    """Exhaustive over the enums the fast path keys by value (the random test may miss one)."""
    from liaison_net.core.ownership import Handling, PermittedAction
    from tests.core.factories import make_tag

    for action, tlp, handling, permitted, actor, target in itertools.product(
            Action, Tlp, Handling, [frozenset(), frozenset(PermittedAction)], NODES[:2],
            NODES[:3]):
        tag = make_tag(tlp=tlp, handling=handling, permitted_actions=permitted,
                       conditions="c" if handling is Handling.H3 else "",
                       community="c" if tlp is Tlp.GREEN else "")
        request = Request(action, NOW, actor, target)
        assert decide(tag, request) == reference_decide(tag, request), (action, tlp, handling)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_check_decides_as_the_straightforward_reference(data: st.DataObject) -> None:
    author = data.draw(st.sampled_from(PEOPLE), label="author")
    recipients = data.draw(st.lists(st.sampled_from(PEOPLE[:4]), min_size=1, max_size=4,
                                    unique_by=lambda o: o.id), label="recipients")
    kind = data.draw(st.sampled_from([Kind.MESSAGE] * 6 + [Kind.REQUEST, Kind.NOTICE,
                                                           Kind.RESTRICT]), label="kind")
    if data.draw(st.integers(0, 9), label="signer fits") > 0:
        author = PEOPLE[4] if kind is Kind.NOTICE else (
            author if author is not PEOPLE[4] else PEOPLE[0])
    tag = data.draw(tags(), label="tag")
    if data.draw(st.integers(0, 3), label="plausible") > 0:  # mostly allowed: reach decide's rules
        tag = _owned_by(tag, author.id.split("/")[0], recipients, data)
    header_kw: dict[str, object] = dict(tag=tag, kind=kind, now=NOW,
                                        expires=min(NOW + 8 * HOUR_MS, tag.retain_until))
    if kind is Kind.MESSAGE and data.draw(st.booleans(), label="forward"):
        first = data.draw(st.sampled_from(PEOPLE[:4]), label="original's author")
        first_tag = _owned_by(data.draw(tags()), first.id.split("/")[0], recipients, data)
        original = seal_from(first, [author], tag=first_tag, now=NOW - HOUR_MS)
        if data.draw(st.booleans(), label="keeps the original's tag"):
            header_kw.update(tag=first_tag,
                             expires=min(NOW + 8 * HOUR_MS, first_tag.retain_until))
        header_kw.update(ref=original.id, original=make_skeleton(original.to_bytes()))
    try:
        env = seal_from(author, recipients, **header_kw)
    except LiaisonError:
        event("not built")
        return  # not even an envelope (e.g. a restriction without what it restricts)
    layer = data.draw(st.sampled_from(list(Layer)), label="layer")
    here = data.draw(st.sampled_from(NODES), label="here")
    now = NOW + data.draw(st.sampled_from([0, 400 * DAY_MS]), label="late")
    expected = _outcome(lambda: reference_check(env.header, layer=layer, here=here, now=now))
    got = _outcome(lambda: check(env.header, layer=layer, here=here, now=now,
                                 lookup=KEYS.get, officer_key=CARDS.get))
    event(f"outcome: {expected if isinstance(expected, tuple) else 'allowed'}")
    assert got == expected
