"""How officer commands show things: one JSON-able report per answer, and its rich rendering.

Text from the network (names, tag fields, subjects, message text) is untrusted: it is
rendered with markup off and with control and bidirectional-override characters replaced,
so no sender can move the cursor, recolour, or reorder what the reader sees. JSON output
escapes everything non-ASCII and is safe as is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from liaison_net.cli import tables
from liaison_net.client.directory import Directory
from liaison_net.client.tagging import (
    ACCURACY_MEANING,
    HANDLING_MEANING,
    SOURCE_MEANING,
    TLP_MEANING,
)
from liaison_net.core.almanac import Almanac
from liaison_net.core.content import Content
from liaison_net.core.envelope import Envelope, Precedence
from liaison_net.core.ids import id_to_text
from liaison_net.core.policy import Action, Request, decide

if TYPE_CHECKING:  # aiohttp: only for the annotations here, not at import
    from liaison_net.client.answers import HoldStatus
    from liaison_net.client.session import EnvelopeStatus, InboxEntry

# C0/C1 controls (tab and newline survive where text spans lines), DEL, and the Unicode
# bidi embedding/override/isolate controls that can make text read differently.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")



def safe(text: str) -> str:
    return _UNSAFE.sub("\N{REPLACEMENT CHARACTER}", text)


def ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def ts_short(ms: int | None) -> str:
    """Minutes are enough in a table, and keep it on one line."""
    return ts(ms)[:16] + "Z" if ms is not None else "-"


def _table(*columns: str) -> Table:
    """A compact table; an id column never wraps or shrinks: ids are copied into `read`."""
    return tables.table(*columns, compact=True)


def _console() -> Console:
    return tables.console()


def _bold(text: str) -> Text:
    return Text(text, style="bold")


# --- inbox ----------------------------------------------------------------------------------


def inbox_json(item: InboxEntry) -> dict[str, Any]:
    out = {"seq": item.seq, "id": item.id, "sender": item.sender, "kind": item.kind,
           "precedence": item.precedence, "created": item.created, "relayed": item.relayed,
           "acked": item.acked, "retain_until": item.retain_until, "purged": item.purged}
    if item.purged is not None:
        out["tag"] = item.tag  # what the signed tag skeleton keeps
    return out


def purged_label(item: InboxEntry) -> str:
    """How a purged entry shows: the content is gone, the tag's retention passed (or,
    before it, the owner recalled it: core/restriction.py)."""
    if item.purged is None:
        return ""
    tag = item.tag or {}
    handling, tlp = tag.get("handling"), tag.get("tlp")
    kept = f" ({safe(str(handling))}, TLP:{safe(str(tlp))})" if handling and tlp else ""
    recalled = item.retain_until is not None and item.purged < item.retain_until
    return f"{'recalled' if recalled else 'purged'} {ts_short(item.purged)}{kept}"


#: What the inbox's content column means, printed under it and in `liaison inbox --help`.
CONTENT_LEGEND = (
    "content: held = your node keeps it, sealed for you, until the tag's retention date: "
    "`liaison read ID` verifies and opens it, `liaison ack ID` takes it off this list (it "
    "stays readable); purged = that date has passed and the content is gone everywhere, "
    "only its tag is left.")

_PRECEDENCE_RANK = {p.label: p.value for p in Precedence}


def by_precedence(items: list[InboxEntry]) -> list[InboxEntry]:
    """Flash first, then immediate, priority, routine; within each, in arrival order."""
    return sorted(items, key=lambda i: (-_PRECEDENCE_RANK.get(i.precedence, -1), i.relayed,
                                        i.seq))


def print_inbox(items: list[InboxEntry]) -> None:
    console = _console()
    if not items:
        console.print("inbox is empty")
        return
    table = _table("id", "from", "kind", "precedence", "created", "acked", "content")
    for i in by_precedence(items):
        table.add_row(i.id, safe(i.sender), safe(i.kind), safe(i.precedence),
                      ts_short(i.created), ts_short(i.acked) if i.acked is not None else "no",
                      purged_label(i) or "held")
    console.print(table)
    console.print(CONTENT_LEGEND)


def inbox_line(item: InboxEntry) -> str:
    """One entry on one line, for `liaison inbox --follow`."""
    line = (f"{ts_short(item.created)}  {item.id}  {safe(item.sender)}  {safe(item.kind)}  "
            f"{safe(item.precedence)}")
    return f"{line}  {purged_label(item)}" if item.purged is not None else line


# --- one envelope ---------------------------------------------------------------------------


def envelope_report(envelope: Envelope, content: Content, directory: Directory, *,
                    own_node: str, now: int) -> dict[str, Any]:
    """Everything `read` shows, as plain data: header, tag and meaning, what it allows."""
    h = envelope.header
    tag = h.tag
    card = directory.cards.get(h.sender)
    allows = []
    for node in sorted(tag.share_with | {own_node}):
        d = decide(tag, Request(Action.FORWARD, now, actor_node=own_node, target_node=node))
        allows.append({"action": "forward", "target": node, "allowed": d.allowed,
                       "rule": d.code, "reason": d.reason})
    d = decide(tag, Request(Action.EVIDENCE, now, actor_node=own_node, target_node=own_node))
    allows.append({"action": "evidence", "target": own_node, "allowed": d.allowed,
                   "rule": d.code, "reason": d.reason})
    return {
        "id": h.id_text,
        "kind": h.kind.value,
        "precedence": h.precedence.label,
        "sender": {"officer": h.sender, "name": card.name if card else None,
                   "role": card.role if card else None},
        "recipients": [r.officer for r in h.recipients],
        "created": h.created,
        "expires": h.expires,
        "ref": id_to_text(h.ref) if h.ref is not None else None,
        "tag": {
            "owner": str(tag.owner),
            "handling": tag.handling.value,
            "handling_meaning": HANDLING_MEANING[tag.handling],
            "conditions": tag.conditions,
            "tlp": tag.tlp.value,
            "tlp_meaning": TLP_MEANING[tag.tlp],
            "community": tag.community,
            "evaluation": str(tag.evaluation),
            "evaluation_meaning": (f"{SOURCE_MEANING[tag.evaluation.source]}; "
                                   f"{ACCURACY_MEANING[tag.evaluation.accuracy]}"),
            "share_with": sorted(tag.share_with),
            "permitted_actions": sorted(a.value for a in tag.permitted_actions),
            "purpose": tag.purpose,
            "retain_until": tag.retain_until,
        },
        "allows": allows,
        "content": {
            "subject": content.subject,
            "text": content.text,
            "attachments": [{"name": a.name, "media_type": a.media_type, "bytes": len(a.data)}
                            for a in content.attachments],
        },
    }


def print_envelope(report: dict[str, Any]) -> None:
    console = _console()
    tag = report["tag"]
    sender = report["sender"]
    who = safe(sender["officer"])
    if sender["name"]:
        who += f" ({safe(sender['name'])}, {safe(sender['role'])})"
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("envelope", f"{report['id']}  {report['kind']}, {report['precedence']}")
    head.add_row("from", who)
    head.add_row("to", ", ".join(safe(r) for r in report["recipients"]))
    head.add_row("created", ts(report["created"]))
    head.add_row("expires", ts(report["expires"]))
    if report["ref"]:
        head.add_row("refers to", report["ref"])
    head.add_row("owner", safe(tag["owner"]))
    head.add_row("handling", f"{tag['handling']}: {tag['handling_meaning']}")
    if tag["conditions"]:
        head.add_row("conditions", safe(tag["conditions"]))
    head.add_row("TLP", f"{tag['tlp']}: {tag['tlp_meaning']}")
    if tag["community"]:
        head.add_row("community", safe(tag["community"]))
    head.add_row("evaluation", f"{tag['evaluation']}: {tag['evaluation_meaning']}")
    head.add_row("share with", ", ".join(tag["share_with"]))
    head.add_row("permitted", ", ".join(tag["permitted_actions"]) or "nothing beyond reading")
    head.add_row("purpose", safe(tag["purpose"]))
    head.add_row("retain until", ts(tag["retain_until"]))
    console.print(head)
    console.print()
    console.print(_bold("what this tag allows you"))
    allows = Table.grid(padding=(0, 2))
    for a in report["allows"]:
        target = f"{a['action']} to {a['target']}" if a["action"] == "forward" else a["action"]
        verdict = Text("allowed", style="green") if a["allowed"] else Text("refused",
                                                                           style="red")
        allows.add_row(target, verdict, "" if a["allowed"] else f"{a['rule']}: {a['reason']}")
    console.print(allows)
    console.print()
    content = report["content"]
    console.print(Text(f"subject: {safe(content['subject'])}", style="bold"))
    console.print()
    console.print(safe(content["text"]))
    for a in content["attachments"]:
        console.print(f"[attachment] {safe(a['name'])} ({safe(a['media_type'])}, "
                      f"{a['bytes']} bytes)")


# --- status and directory -------------------------------------------------------------------


def status_json(status: EnvelopeStatus) -> dict[str, Any]:
    return {"id": status.id,
            "hops": {node: {"state": h.state, "reason": h.reason}
                     for node, h in status.hops.items()},
            "local": [{"officer": item.officer, "relayed": item.relayed, "acked": item.acked}
                      for item in status.local],
            **({"hold": hold_json(status.hold)} if status.hold is not None else {})}


def hold_json(hold: HoldStatus) -> dict[str, Any]:
    return {"state": hold.state, "by": hold.by, "decided": hold.decided,
            "until": hold.until, "reason": hold.reason}


def hold_line(hold: HoldStatus) -> str:
    return hold.describe()


def print_status(status: EnvelopeStatus) -> None:
    console = _console()
    console.print(_bold(f"envelope {status.id}"))
    if status.hold is not None:
        console.print(f"four-eyes: {safe(hold_line(status.hold))}")
    if status.hops:
        hops = _table("to node", "state", "reason")
        for node, hop in sorted(status.hops.items()):
            hops.add_row(safe(node), safe(hop.state), safe(hop.reason or ""))
        console.print(hops)
    if status.local:
        local = _table("recipient", "in inbox since", "acknowledged")
        for item in status.local:
            local.add_row(safe(item.officer), ts_short(item.relayed),
                          ts_short(item.acked) if item.acked is not None else "no")
        console.print(local)
    if not status.hops and not status.local and status.hold is None:
        console.print("no hops and no local recipients recorded")


def directory_json(directory: Directory, *, now: int) -> dict[str, Any]:
    def revoked(officer: str) -> dict[str, Any] | None:
        r = directory.revocation_of(officer, now=now)
        return None if r is None else {"key_id": r.key_id.hex(), "reason": r.reason,
                                       "effective": r.effective, "authority": r.authority}

    return {
        "nodes": sorted(directory.node_keys),
        "officers": [{"officer": c.officer, "name": c.name, "role": c.role, "node": c.node,
                      "version": c.version, "valid_from": c.valid_from,
                      "valid_until": c.valid_until,
                      "signing_key_id": c.signing_key_id.hex(),
                      "encryption_key_id": c.encryption_key_id.hex(),
                      "revoked": revoked(c.officer),
                      **c.almanac.to_json()}
                     for c in sorted(directory.cards.values(), key=lambda c: c.officer)],
        "warnings": directory.warnings,
    }


def almanac_lines(almanac: Almanac) -> list[str]:
    """An almanac entry as the officer and the enrolling administrator confirm it."""
    return [f"languages: {', '.join(almanac.languages) or 'none'}",
            f"posting:   {almanac.posting or 'none'}",
            f"covers:    {', '.join(map(str, almanac.coverage)) or 'nothing'}"]


def print_directory(directory: Directory, *, now: int) -> None:
    console = _console()
    table = _table("officer", "name", "role", "version", "valid until")
    for card in sorted(directory.cards.values(), key=lambda c: c.officer):
        until = ts_short(card.valid_until) + (" (expired)" if now >= card.valid_until else "")
        revocation = directory.revocation_of(card.officer, now=now)
        if revocation is not None:
            until += f" (revoked: {safe(revocation.reason)})"
        table.add_row(safe(card.officer), safe(card.name), safe(card.role), str(card.version),
                      until)
    console.print(table)
    console.print(f"{len(directory.cards)} officers on {len(directory.node_keys)} nodes "
                  f"({', '.join(sorted(directory.node_keys))})")
