"""The measurement timeline (``liaison_net/timeline.py``): off unless asked, bounded, one
clock, and read back by ``bench/timeline_report.py``. Each case runs in a fresh interpreter
(the timeline is per process and switched on once, at start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from liaison_net.bench.timeline_report import load, report

ID_A = bytes(range(16))
ID_B = bytes(range(16, 32))


def _run(code: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env={**os.environ, **env})


def test_off_by_default_it_keeps_and_writes_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TIMELINE"}
    code = ("from liaison_net import timeline\n"
            f"timeline.start('nl'); timeline.mark('o.read', {ID_A!r})\n"
            "assert not timeline.enabled()\n"
            f"import os; os.chdir({str(tmp_path)!r}); timeline.flush()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
    assert list(tmp_path.iterdir()) == []


def test_on_it_writes_the_marks_at_exit_and_keeps_at_most_max_marks(tmp_path: Path) -> None:
    code = ("from liaison_net import timeline\n"
            "timeline.MAX_MARKS = 5\n"
            "timeline.start('nl')\n"
            f"for _ in range(9): timeline.mark('o.read', {ID_A!r})\n")
    _run(code, {"LIAISON_TIMELINE": str(tmp_path)})
    [written] = list(tmp_path.glob("nl-*.tsv"))
    lines = written.read_text().splitlines()
    assert len(lines) == 5
    assert all(line.split("\t")[1:] == ["o.read", ID_A.hex()] for line in lines)


def test_the_report_joins_processes_by_envelope_id_on_one_clock(tmp_path: Path) -> None:
    bench = ("from liaison_net import timeline\n"
             "timeline.start('bench')\n"
             f"timeline.mark('b.due', {ID_A!r}); timeline.mark('b.due', {ID_B!r})\n")
    sink = ("import time\nfrom liaison_net import timeline\n"
            "timeline.start('sink'); time.sleep(0.01)\n"
            f"timeline.mark('sink.seen', {ID_A!r}); time.sleep(0.03)\n"
            f"timeline.mark('sink.seen', {ID_B!r}); timeline.mark('gc.stop')\n")
    for code in (bench, sink):
        _run(code, {"LIAISON_TIMELINE": str(tmp_path)})
    envelopes, background = load(tmp_path)
    assert set(envelopes) == {ID_A, ID_B}
    # Two processes, one clock: the later envelope's total is the longer one, both positive.
    totals = {k: v["sink:sink.seen"] - v["bench:b.due"] for k, v in envelopes.items()}
    assert 0 < totals[ID_A] < totals[ID_B]
    assert [name for _, name in background] == ["sink:gc.stop"]
    assert "2 envelopes" in report(tmp_path)


def test_a_link_planted_at_its_file_is_not_followed(tmp_path: Path) -> None:
    """The file's name is predictable (label and pid): a link planted there by whoever can
    write in the directory must not make the node append to the file it points at, and a
    directory the timeline creates is its user's alone."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    directory = tmp_path / "timeline"
    code = ("import os\nfrom liaison_net import timeline\n"
            "timeline.start('nl')\n"
            f"timeline.mark('o.read', {ID_A!r}); timeline.flush()\n"  # creates the directory
            f"link = os.path.join({str(directory)!r}, f'nl-{{os.getpid()}}.tsv')\n"
            f"os.unlink(link); os.symlink({str(victim)!r}, link)\n"
            f"timeline.mark('o.read', {ID_A!r})\n"
            "try:\n    timeline.flush()\nexcept OSError:\n    pass\n")
    _run(code, {"LIAISON_TIMELINE": str(directory)})
    assert victim.read_text() == "untouched\n"
    assert directory.stat().st_mode & 0o777 == 0o700
