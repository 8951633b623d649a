"""`liaison admin audit export`: the DPO's export of a real node store, read-only, streamed
in pages, filtered by time, officer, envelope, event and Art. 25 category, as JSON or CSV;
bad input is a typed error naming the option, and nothing is written to the store."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from liaison_net.cli.admin_audit_export import MAX_RANGE_DAYS, export_range, parse_instant
from liaison_net.cli.main import main
from liaison_net.core.audit import detail
from liaison_net.core.ids import id_to_text
from liaison_net.errors import LimitExceeded, Malformed
from liaison_net.store import audit_query
from liaison_net.store.node_store import NodeStore

DEC_1 = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
ENV_A = bytes.fromhex("0190a1b2c3d4e5f60718293a4b5c6d7e")
ENV_B = bytes.fromhex("0190a1b2c3d4e5f60718293a4b5c6d7f")
JAN, MARIE = "nl/jdevries", "nl/mjanssen"
Run = Callable[..., "Result"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A node config and its store holding a day of Art. 25 entries (and others)."""
    config = tmp_path / "nl.toml"
    config.write_text('[node]\nid = "nl"\ndata_dir = "data"\ncert_dir = "certs"\n'
                      '[listen]\nfederation = "127.0.0.1:9"\nclient = "127.0.0.1:9"\n')
    purpose = {"purpose": "cross-border investigation", "handling": "H0", "tlp": "AMBER"}
    rows = [
        (DEC_1 + 1 * HOUR, "envelope.accepted", JAN, ENV_A,
         detail(layer="origin", to=["be", "local"], inboxes=[MARIE],
                recipients=["be/mpeeters", MARIE], **purpose)),
        (DEC_1 + 2 * HOUR, "envelope.consulted", MARIE, ENV_A,
         detail(reason="case 2026/117", **purpose)),
        (DEC_1 + 3 * HOUR, "envelope.relayed", "nl", ENV_A, detail(peer="be")),
        (DEC_1 + 4 * HOUR, "login.failed", JAN, None,
         detail(stage="signature", code="unauthorized", failures=1)),
        (DEC_1 + 5 * HOUR, "key.rotated", "nl", None, detail(kind="node-signing")),
        (DEC_1 + 6 * HOUR, "envelope.accepted", MARIE, ENV_B,
         detail(layer="origin", to=["local"], inboxes=[JAN], forward_of=id_to_text(ENV_A),
                consent=False, **purpose)),
        (DEC_1 + 30 * HOUR, "envelope.purged", "nl", ENV_A, detail(body_length=10)),
    ]

    async def fill() -> None:
        store = NodeStore(tmp_path / "data" / "node.sqlite3", "nl")
        await store.open()
        try:
            for at, event, actor, eid, text in rows:
                await store.audit(now=at, event=event, actor=actor, audit_detail=text,
                                  envelope_id=eid)
        finally:
            await store.close()

    asyncio.run(fill())
    return config


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """`liaison ARGS` through the real entry point (error handler and exit codes)."""

    def invoke(*args: str | Path) -> Result:
        monkeypatch.setattr(sys, "argv", ["liaison", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def _export(run: Run, node: Path, *args: str) -> dict[str, Any]:
    result = run("admin", "audit", "export", "--config", node, "--since", "2026-12-01",
                 "--until", "2026-12-02", "--json", *args)
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def test_json_export_has_a_header_and_the_day_s_entries_with_categories(
        run: Run, node: Path) -> None:
    doc = _export(run, node)
    assert doc["node"] == "nl"
    assert doc["since"] == "2026-12-01T00:00:00.000+00:00"
    assert doc["until"] == "2026-12-02T00:00:00.000+00:00"
    assert doc["head_seq"] == 7 and doc["count"] == 6  # the purge is on the next day
    events = [(e["event"], e["categories"]) for e in doc["entries"]]
    assert events == [
        ("envelope.accepted", ["collection", "disclosure"]),
        ("envelope.consulted", ["consultation"]),
        ("envelope.relayed", ["disclosure"]),
        ("login.failed", ["login"]),
        ("key.rotated", []),
        ("envelope.accepted", ["collection", "disclosure", "combination"]),
    ]
    consulted = doc["entries"][1]
    assert consulted["actor"] == MARIE and consulted["envelope"] == id_to_text(ENV_A)
    assert consulted["detail"]["reason"] == "case 2026/117"
    assert consulted["at"] == "2026-12-01T02:00:00.000+00:00"
    assert len(consulted["hash"]) == 64


def test_filters_by_officer_envelope_event_and_category(run: Run, node: Path) -> None:
    seqs = lambda doc: [e["seq"] for e in doc["entries"]]  # noqa: E731
    # Marie: her consultation, and the entries naming her (an inbox, a recipient).
    assert seqs(_export(run, node, "--officer", MARIE)) == [1, 2, 6]
    # Envelope A: its own entries and the forward naming it as its original.
    assert seqs(_export(run, node, "--envelope", id_to_text(ENV_A))) == [1, 2, 3, 6]
    assert seqs(_export(run, node, "--event", "login.failed", "--event",
                        "envelope.relayed")) == [3, 4]
    assert seqs(_export(run, node, "--category", "combination")) == [6]
    assert seqs(_export(run, node, "--category", "disclosure",
                        "--officer", JAN)) == [1, 6]
    # The next day's purge, by a range with times and zones.
    later = run("admin", "audit", "export", "--config", node, "--since",
                "2026-12-02T05:00:00+01:00", "--until", "2026-12-02T07:00:00Z", "--json")
    assert [e["event"] for e in json.loads(later.out)["entries"]] == ["envelope.purged"]


def test_csv_export_has_comment_header_columns_and_rows(run: Run, node: Path) -> None:
    result = run("admin", "audit", "export", "--config", node, "--since", "2026-12-01",
                 "--until", "2026-12-03", "--csv", "--officer", JAN)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    header = [line for line in lines if line.startswith("#")]
    assert '# node: "nl"' in header and "# entries: 3" in header
    rows = list(csv.DictReader(io.StringIO(
        "\n".join(line for line in lines if not line.startswith("#")))))
    assert [r["event"] for r in rows] == ["envelope.accepted", "login.failed",
                                          "envelope.accepted"]
    assert rows[0]["categories"] == "collection;disclosure"
    assert json.loads(rows[1]["detail"])["stage"] == "signature"
    assert rows[1]["envelope"] == ""


def test_export_pages_through_more_entries_than_a_page(
        run: Run, node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_query, "PAGE", 2)
    doc = _export(run, node)
    assert [e["seq"] for e in doc["entries"]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(("args", "code", "words"), [
    (("--since", "yesterday"), "malformed", "--since 'yesterday' is not a date"),
    (("--since", "2026-12-01T08:00:00"), "malformed", "no zone"),
    (("--since", "2026-12-02", "--until", "2026-12-01"), "malformed", "must be after"),
    (("--since", "2024-01-01", "--until", "2026-01-01"), "limit_exceeded", "at most 366 days"),
    (("--since", "2026-12-01", "--officer", "jdevries"), "malformed", ""),
    (("--since", "2026-12-01", "--envelope", "nope"), "malformed", ""),
    (("--since", "2026-12-01", "--event", "DROP TABLE"), "malformed", "not an event name"),
])
def test_bad_input_is_a_typed_error(run: Run, node: Path, args: tuple[str, ...], code: str,
                                    words: str) -> None:
    before = node.parent.joinpath("data", "node.sqlite3").read_bytes()
    result = run("admin", "audit", "export", "--config", node, "--json", *args)
    assert result.code == 2 and f"error: {code}:" in result.err and words in result.err
    assert result.out == ""
    assert node.parent.joinpath("data", "node.sqlite3").read_bytes() == before


def test_one_format_exactly(run: Run, node: Path) -> None:
    for flags in ((), ("--json", "--csv")):
        result = run("admin", "audit", "export", "--config", node, "--since", "2026-12-01",
                     *flags)
        assert result.code == 2 and "--json or --csv" in result.err


def test_range_parsing() -> None:
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    since, until = export_range("2026-12-03", None, now)
    assert until - since == 34 * 3_600_000
    assert parse_instant("2026-12-01T01:00:00+01:00", "--since") == datetime(2026, 12, 1,
                                                                            tzinfo=UTC)
    export_range("2025-12-03", f"2026-12-0{3 + MAX_RANGE_DAYS - 365}", now)  # the limit holds
    with pytest.raises(LimitExceeded):
        export_range("2025-12-03", "2026-12-05", now)
    with pytest.raises(Malformed):
        export_range("2026-12-05", None, now)  # in the future: after now
