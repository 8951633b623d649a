"""Requests with the legal deadlines of Directive (EU) 2023/977, on two real nodes.

The due time follows the urgency; an unanswered request escalates to the receiving node's
desk and the requester (the test makes the node escalate almost 8 hours early through its
configuration instead of sleeping); a reply closes the request on both sides; a late reply
must state a reason.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest

from liaison_net.core import content, sealing
from liaison_net.core.envelope import Kind, Urgency
from liaison_net.core.ids import envelope_id_time_ms, id_from_text
from liaison_net.core.limits import DAY_MS, HOUR_MS
from tests.integration.network import Network, audit_rows, run_cli, wait_for
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol
from tests.integration.test_first_alert import directory_with

pytestmark = pytest.mark.slow
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
REQUESTS = {"escalate_before_s": 28797, "check_s": 0.2}  # 8 h minus 3 s


def cli(agent: OfficerAgent, *args: str, check: bool = True) -> tuple[int, str]:
    proc = run_cli(*args, "--keystore", str(agent.path), env=ENV, check=check)
    return proc.returncode, proc.stdout + proc.stderr


def as_json(text: str) -> object:
    return json.loads(text[min(i for i in (text.find("{"), text.find("[")) if i >= 0):])


def requests_of(agent: OfficerAgent, *extra: str) -> dict[str, dict[str, object]]:
    _, out = cli(agent, "requests", "--json", *extra)
    return {str(r["id"]): r for r in as_json(out)}  # type: ignore[attr-defined]


async def test_due_times_escalation_answers_and_late_replies(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "be"), sections={"requests": REQUESTS})
    jan, marie, desk = (enrol(net, "nl/jdevries"), enrol(net, "be/mpeeters"),
                        enrol(net, "be/desk"))
    for nid in ("nl", "be"):
        net.start(nid)
    async with jan.session() as node:
        await directory_with(node, marie.id, desk.id)

    ask = ("--to", marie.id, "--subject", "Vehicle owner", "--purpose", "theft investigation")
    _, out = cli(jan, "request", *ask, "--urgency", "urgent-direct", "--text", "Owner of "
                 "1-ABC-123?", "--json")
    urgent = as_json(out)["id"]  # type: ignore[index]
    _, out = cli(jan, "request", *ask, "--urgency", "other", "--text", "History?", "--json")
    other = as_json(out)["id"]  # type: ignore[index]
    mine = requests_of(jan)
    for rid, period in ((urgent, 8 * HOUR_MS), (other, 7 * DAY_MS)):
        assert mine[rid]["direction"] == "outgoing"
        assert mine[rid]["due"] == envelope_id_time_ms(id_from_text(rid)) + period

    # Left unanswered, the urgent one escalates to BE's desk and to Jan; the other does not.
    await asyncio.to_thread(wait_for, lambda: requests_of(marie).get(urgent, {}).get(
        "escalated"), timeout=30, what="the escalation at BE")
    assert not requests_of(marie)[other]["escalated"]
    for agent in (desk, jan):
        await asyncio.to_thread(wait_for, lambda a=agent: any(
            r.event == "request.escalated" for r in audit_rows(net, "be")) and '"kind": '
            '"notice"' in cli(a, "inbox", "--json")[1], timeout=30,
            what=f"the escalation notice for {agent.id}")

    # Marie answers the other one: closed on both sides.
    cli(marie, "reply", other, "--text", "Stolen twice in 2025.")
    await asyncio.to_thread(wait_for, lambda: other not in requests_of(jan), timeout=30,
                            what="the answer to reach NL")
    assert other not in requests_of(marie)
    assert requests_of(jan, "--all")[other]["reply"]

    # A request already past its due time: a reply must say why it is late.
    now = time.time_ns() // 1_000_000
    async with jan.session() as node:
        directory = await node.directory(now=datetime.now(UTC))
        old = sealing.seal(
            sender=jan.id, sender_key=jan.keystore.signing,
            recipients=[directory.recipient(marie.id, now=now)], tag=benelux_tag("nl"),
            plaintext=content.encode(content.Content(subject="Old", text="?")),
            now=now - 9 * HOUR_MS, expires=now + HOUR_MS, kind=Kind.REQUEST,
            urgency=Urgency.URGENT_DIRECT)
        await node.submit(old.to_bytes())
    await asyncio.to_thread(wait_for, lambda: old.header.id_text in requests_of(marie),
                            timeout=30, what="the overdue request at BE")
    code, out = cli(marie, "reply", old.header.id_text, "--text", "Here.", check=False)
    assert code == 2 and "late reply must state a reason" in out
    _, out = cli(marie, "reply", old.header.id_text, "--text", "Here.", "--late-reason",
                 "register offline over the weekend", "--json")
    assert as_json(out)["late"] is True  # type: ignore[index]
