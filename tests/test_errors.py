"""The exception tree: stable unique codes, statuses split by fault, and documented."""

from __future__ import annotations

import re
from pathlib import Path

from liaison_net.core.policy import REASONS
from liaison_net.errors import LiaisonError, NodeFault, Refused, all_error_classes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_codes_are_unique_and_statuses_follow_fault() -> None:
    classes = all_error_classes()
    assert len(classes) >= 15
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        if issubclass(cls, Refused):
            assert 400 <= cls.http_status < 500, cls
        elif issubclass(cls, NodeFault):
            assert 500 <= cls.http_status < 600, cls


def test_error_names_its_reason() -> None:
    err = Refused("recipient be/x is unknown", code="refused")
    assert err.to_dict() == {"error": "refused", "detail": "recipient be/x is unknown"}
    assert str(err) == "refused: recipient be/x is unknown"
    assert isinstance(err, LiaisonError)


def test_every_code_is_documented_in_protocol_md() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"`([a-z_.]+)`", text))
    expected = {c.code for c in all_error_classes()} | {f"policy.{r}" for r in REASONS
                                                        if r != "allowed"}
    assert expected <= documented, sorted(expected - documented)
