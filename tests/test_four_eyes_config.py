"""[four_eyes] and [admin] in the node config (issue 19): defaults, per-unit policies, each
node keeping its own approvers, and every bad value a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liaison_net import config
from liaison_net.core import crypto
from liaison_net.core.ownership import Handling, Tlp
from liaison_net.core.signals import Severity
from liaison_net.errors import ConfigError

BASE: dict[str, Any] = {"node": {"id": "nl", "data_dir": "data", "cert_dir": "certs"},
                        "listen": {"federation": "127.0.0.1:7501", "client": "127.0.0.1:7502"}}
KEYS = [crypto.generate_signing_key().public.hex() for _ in range(2)]


def parse(**sections: Any) -> config.NodeConfig:
    return config.parse({**BASE, **sections}, Path("/tmp/nl.toml"))


def test_four_eyes_is_off_without_the_section_and_defaults_to_red_h3_critical() -> None:
    assert parse().four_eyes.enabled is False
    on = parse(four_eyes={"approvers": {"liaison": ["nl/akramer", "be/mpeeters"]},
                          "units": {"cid-limburg": {"tlp": ["RED", "AMBER+STRICT"]}}})
    assert on.four_eyes.enabled
    policy = on.four_eyes.policy_for("liaison")
    assert (policy.tlp, policy.handling, policy.signal_severity) == (
        {Tlp.RED}, {Handling.H3}, {Severity.CRITICAL})
    assert on.four_eyes.policy_for("cid-limburg").tlp == {Tlp.RED, Tlp.AMBER_STRICT}
    # One list for the whole network: each node keeps its own officers only.
    assert on.four_eyes.approvers == {"liaison": frozenset({"nl/akramer"})}
    assert on.four_eyes.units_of("nl/akramer") == ["liaison"]


@pytest.mark.parametrize("table", [
    {"tlp": ["PURPLE"]}, {"handling": "H3"}, {"signal_severity": ["CRITICAL"]},
    {"hold_hours": 0}, {"approvers": {"liaison": []}}, {"approvers": {"liaison": ["nobody"]}},
    {"surprise": 1}, {"enabled": "yes"}, {"units": {"x": {"tlp": ["RED"], "odd": 1}}},
])
def test_a_bad_four_eyes_value_is_a_config_error(table: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="four_eyes"):
        parse(four_eyes=table)


def test_admin_four_eyes_needs_two_distinct_valid_keys() -> None:
    assert parse().admin.four_eyes is False
    ok = parse(admin={"four_eyes": True, "admins": {"alice": KEYS[0], "bob": KEYS[1]}})
    assert ok.admin.admins["bob"] == bytes.fromhex(KEYS[1])
    for bad in ({"four_eyes": True, "admins": {"alice": KEYS[0]}},
                {"admins": {"alice": KEYS[0], "alias": KEYS[0]}},
                {"admins": {"alice": "00" * 32}},  # a small-order point
                {"admins": {"Alice!": KEYS[0]}},
                {"four_eyes": 1}, {"who": "me"}):
        with pytest.raises(ConfigError, match="admin"):
            parse(admin=bad)
