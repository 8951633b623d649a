"""Read a light load's timeline (``liaison_net/timeline.py``) and say where the tail goes.

``LIAISON_TIMELINE=DIR liaison bench --scenario light ...`` leaves one file per process in
DIR; ``python -m liaison_net.bench.timeline_report DIR`` joins their marks by envelope id
(every process stamps CLOCK_MONOTONIC, one clock per host) and prints, for each segment of
an envelope's path, its median over the envelopes around the median latency and over the
slowest ones, and what else each node was doing while the slow envelopes travelled
(commits, drain passes, GC pauses, other transactions). For measurement only.
"""

from __future__ import annotations

import bisect
import statistics
import sys
from collections import defaultdict
from pathlib import Path

#: The path of a bench envelope, as (segment name, from step, to step); a step is
#: "<process label>:<mark>" (nl: the origin, be: the destination, bench, sink).
SEGMENTS = (
    ("client: due -> request started", "bench:b.due", "bench:b.submit"),
    ("client -> origin: request read", "bench:b.submit", "nl:o.read"),
    ("origin: read -> verified", "nl:o.read", "nl:o.verified"),
    ("origin: verified -> committed (write queued, group, fsync)", "nl:o.verified",
     "nl:o.handed"),
    ("origin: handed -> answer made", "nl:o.handed", "nl:o.answer"),
    ("origin answer -> client has it", "nl:o.answer", "bench:b.accepted"),
    ("origin: handed -> transaction sent", "nl:o.handed", "nl:s.sent"),
    ("transaction sent -> destination read", "nl:s.sent", "be:d.read"),
    ("destination: read -> committed, answer made", "be:d.read", "be:d.answer"),
    ("destination answer -> sink sees the row", "be:d.answer", "sink:sink.seen"),
    ("total: due -> sink sees the row", "bench:b.due", "sink:sink.seen"),
)
#: Node-wide marks counted while a slow envelope travels: (label, step prefix).
BACKGROUND = (("nl", "w.group"), ("be", "w.group"), ("nl", "e.due"), ("be", "e.due"),
              ("nl", "gc"), ("be", "gc"), ("bench", "gc"), ("sink", "gc"))


def load(directory: Path) -> tuple[dict[bytes, dict[str, int]], list[tuple[int, str]]]:
    """Per envelope id its first stamp of each step; and every node-wide or other-envelope
    mark as (ns, "label:step")."""
    per: dict[bytes, dict[str, int]] = defaultdict(dict)
    other: list[tuple[int, str]] = []
    for path in sorted(directory.glob("*.tsv")):
        label = path.stem.rsplit("-", 1)[0]
        for line in path.read_text(encoding="ascii").splitlines():
            ns_text, step, key = line.split("\t")
            ns, name = int(ns_text), f"{label}:{step}"
            if key:
                stamps = per[bytes.fromhex(key)]
                if name not in stamps or ns < stamps[name]:
                    stamps[name] = ns
            else:
                other.append((ns, name))
    bench = {k: v for k, v in per.items() if "bench:b.due" in v and "sink:sink.seen" in v}
    for envelope_id, stamps in per.items():  # other envelopes (evidence): their marks are events
        if envelope_id not in bench:
            other.extend((ns, f"{name}(other)") for name, ns in stamps.items())
    other.sort()
    return bench, other


def _ms(stamps: dict[str, int], start: str, end: str) -> float | None:
    if start in stamps and end in stamps:
        return (stamps[end] - stamps[start]) / 1e6
    return None


def report(directory: Path, slow_share: float = 0.05) -> str:
    bench, other = load(directory)
    if not bench:
        return f"no bench envelope with both ends in {directory}"
    order = sorted(bench, key=lambda k: bench[k]["sink:sink.seen"] - bench[k]["bench:b.due"])
    n = len(order)
    slow = order[max(0, n - max(1, round(n * slow_share))):]
    middle = order[int(n * 0.4):int(n * 0.6)] or order
    lines = [f"{n} envelopes; middle = p40-p60 ({len(middle)}), slow = top "
             f"{slow_share:.0%} ({len(slow)})", "",
             f"{'segment':58} {'middle p50':>10} {'slow p50':>9} {'slow max':>9}"]
    for name, start, end in SEGMENTS:
        mid = [v for k in middle if (v := _ms(bench[k], start, end)) is not None]
        tail = [v for k in slow if (v := _ms(bench[k], start, end)) is not None]
        if mid and tail:
            lines.append(f"{name:58} {statistics.median(mid):10.2f} "
                         f"{statistics.median(tail):9.2f} {max(tail):9.2f}")
    lines += ["", "each slow envelope: total ms, its three largest segments, and node-wide "
              "marks during it"]
    stamps_of = [ns for ns, _ in other]
    for key in reversed(slow):
        stamps = bench[key]
        total = _ms(stamps, "bench:b.due", "sink:sink.seen")
        parts = sorted(((v, name) for name, s, e in SEGMENTS[:-1]
                        if (v := _ms(stamps, s, e)) is not None), reverse=True)[:3]
        lo, hi = stamps["bench:b.due"], stamps["sink:sink.seen"]
        during: dict[str, int] = defaultdict(int)
        for i in range(bisect.bisect_left(stamps_of, lo), bisect.bisect_right(stamps_of, hi)):
            during[other[i][1]] += 1
        shown = ", ".join(f"{name} x{count}" for name, count in sorted(during.items()))
        lines.append(f"{key.hex()[-8:]} {total:7.2f} ms | "
                     + "; ".join(f"{name} {v:.1f}" for v, name in parts) + f" | {shown}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    share = float(argv[2]) if len(argv) > 2 else 0.05
    print(report(Path(argv[1]), share))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
