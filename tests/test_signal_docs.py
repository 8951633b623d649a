"""docs/signals.md defines every category of the controlled vocabulary, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from liaison_net.core.signals import Category

DOC = Path(__file__).resolve().parents[1] / "docs" / "signals.md"


def test_every_category_is_defined_in_the_docs() -> None:
    table = DOC.read_text().split("## Categories")[1].split("##")[0]
    documented = set(re.findall(r"^\| `([a-z-]+)` \| (.{20,}) \|$", table, flags=re.M))
    assert {name for name, _ in documented} == {c.value for c in Category}
