"""Per-caller rate limits, sans I/O: every method takes ``now`` (seconds, any monotonic clock).

``TokenBucket`` admits work at ``rate`` units per second with bursts of up to ``capacity``.
A request costing more than the bucket holds is still admitted once the bucket holds
``min(cost, capacity)``, and then leaves it in debt: a batch larger than the burst is not
refused forever, and the long-run rate still holds (what was admitted by time ``t`` is at
most ``capacity + rate * t`` plus one request's cost).

``RefusalWindow`` decides when a refusal deserves an audit entry: the first one of each
window, carrying how many refusals it stands for. One audit row per refused request would
let a flood fill the disk through the audit log. ``RefusalTally`` does the same for the
envelopes of a peer's batches that cannot even be verified (garbage): one report per
window, with their count, codes, and the first and last of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # units added per second
    capacity: float  # the most the bucket holds: the burst
    tokens: float
    stamp: float  # ``now`` of the last refill

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.capacity >= 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate, capacity, float(capacity), now)

    def _refill(self, now: float) -> None:
        if now > self.stamp:  # a clock that steps back adds nothing
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, now: float) -> bool:
        """Would a request costing one unit be admitted now? (takes nothing)"""
        self._refill(now)
        return self.tokens >= 1

    def take(self, cost: float, now: float) -> bool:
        """Admit ``cost`` units (True) or refuse and take nothing (False)."""
        if cost < 0:
            raise ValueError("cost must not be negative")
        self._refill(now)
        if self.tokens < min(max(cost, 1.0), self.capacity):
            return False
        self.tokens -= cost
        return True

    def wait_s(self, cost: float, now: float) -> float:
        """Seconds until ``take(cost)`` could succeed (0 if it could now)."""
        self._refill(now)
        need = min(max(cost, 1.0), self.capacity) - self.tokens
        return max(0.0, need / self.rate)


@dataclass
class RefusalWindow:
    window_s: float
    refused: int = 0  # refusals not yet reported in an audit entry
    next_report: float | None = None

    def refuse(self, now: float) -> int | None:
        """Count one refusal; the number of refusals to report if this one opens a new
        window (audit it), else None (count it towards the next report)."""
        self.refused += 1
        if self.next_report is not None and now < self.next_report:
            return None
        reported, self.refused = self.refused, 0
        self.next_report = now + self.window_s
        return reported


MAX_TALLY_CODES = 32  # distinct codes named in one report; the rest are counted as "other"


@dataclass
class RefusalTally:
    window_s: float
    refused: int = 0  # refusals not yet reported
    codes: dict[str, int] = field(default_factory=dict)
    first: str = ""  # reference (e.g. a digest) of the first refusal not yet reported
    last: str = ""
    next_report: float | None = None

    def add(self, code: str, ref: str) -> None:
        """Count one refusal (no report yet: a batch is reported whole, by ``report``)."""
        self.refused += 1
        key = code if code in self.codes or len(self.codes) < MAX_TALLY_CODES else "other"
        self.codes[key] = self.codes.get(key, 0) + 1
        self.first = self.first or ref
        self.last = ref

    def report(self, now: float) -> dict[str, object] | None:
        """What to audit now, if anything: all refusals counted since the last report, once
        the window since that report has passed (the first report of a spell at once)."""
        if not self.refused or (self.next_report is not None and now < self.next_report):
            return None
        out: dict[str, object] = {
            "refused": self.refused, "codes": dict(sorted(self.codes.items())),
            "first": self.first, "last": self.last, "window_s": self.window_s}
        self.refused, self.codes, self.first, self.last = 0, {}, "", ""
        self.next_report = now + self.window_s
        return out
