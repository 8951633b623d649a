"""Supervision of a node's background loops: one failure is one failure (DESIGN 7).

Theory of operation, after Erlang/OTP's ``one_for_one`` supervisor. Every loop a node runs
in the background (a sender per peer, the desks, the key watcher, the sweeps, the store's
group-commit writer) is a *child*: a name and a factory that makes a fresh coroutine for
each (re)start. Each child runs inside its own supervising task in the node's TaskGroup, so
only shutdown (the TaskGroup's cancellation) ends them together.

When a child raises an exception, or returns (our loops are meant to run until cancelled),
its supervising task catches it, logs it, writes one ``loop.crashed`` audit entry, and
starts the child again after an exponential backoff with jitter. Siblings and the
listeners never see the exception. A child that crashes more than ``intensity`` times
within ``period_s`` is given up on: it is marked FAILED (``loop.failed`` in the audit),
``/healthz`` answers ``degraded`` naming it, and ``liaison_loop_up{loop=...}`` stays 0, but
every other loop keeps running. Only ``Exception`` is caught: cancellation and
``KeyboardInterrupt``/``SystemExit`` propagate, as they must.

The restart decision is a pure function of the crash times (``RestartPolicy``, in
``core.restart`` so that reading a config does not import the supervisor), so it is
tested without an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from liaison_net.core.restart import RestartPolicy
from liaison_net.metrics import NodeMetrics

log = structlog.get_logger("liaison.supervisor")

#: Audit hook: (event, loop name, detail fields). Awaited with a bound (``AUDIT_TIMEOUT_S``).
AuditHook = Callable[[str, dict[str, object]], Awaitable[None]]
#: How long one audit write may hold up a restart: the child being restarted may be the
#: very writer the audit entry waits for (its write stays queued and lands after restart).
AUDIT_TIMEOUT_S = 2.0
MAX_REASON = 200


class ChildState(enum.Enum):
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


@dataclass
class Child:
    name: str
    start: Callable[[], Awaitable[None]]
    on_failed: Callable[[], None] | None = None
    state: ChildState = ChildState.RUNNING
    restarts: int = 0
    last_error: str = ""
    crashes: deque[float] = field(default_factory=deque)


class Supervisor:
    def __init__(self, *, policy: RestartPolicy | None = None,
                 audit: AuditHook | None = None, metrics: NodeMetrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy or RestartPolicy()
        self.audit = audit
        self.metrics = metrics
        self._monotonic = monotonic
        self._rand = rand
        self.children: dict[str, Child] = {}

    def add(self, name: str, start: Callable[[], Awaitable[None]], *,
            on_failed: Callable[[], None] | None = None) -> Child:
        """Register a child; ``start`` makes a fresh coroutine for each (re)start."""
        if name in self.children:
            raise ValueError(f"a child named {name} is already supervised")
        child = self.children[name] = Child(name, start, on_failed)
        return child

    def start(self, tasks: asyncio.TaskGroup) -> None:
        """One supervising task per child, owned by the node's TaskGroup."""
        for child in self.children.values():
            tasks.create_task(self.supervise(child), name=f"supervise-{child.name}")

    def failed(self) -> list[str]:
        return sorted(c.name for c in self.children.values() if c.state is ChildState.FAILED)

    def states(self) -> dict[str, str]:
        return {name: c.state.value for name, c in sorted(self.children.items())}

    async def supervise(self, child: Child) -> None:
        while True:
            child.state = ChildState.RUNNING
            self._up(child, True)
            try:
                await child.start()
                error, reason = "Returned", "the loop returned"
            except Exception as exc:  # the one place every loop error stops
                error, reason = type(exc).__name__, str(exc)[:MAX_REASON]
                log.error("loop.crashed", loop=child.name, error=error, reason=reason,
                          exc_info=exc)
            self._up(child, False)
            child.last_error = f"{error}: {reason}"[:MAX_REASON]
            delay = self.policy.decide(child.crashes, self._monotonic(), self._rand())
            if delay is None:
                child.state = ChildState.FAILED
                log.error("loop.failed", loop=child.name, crashes=len(child.crashes),
                          period_s=self.policy.period_s, error=error)
                try:
                    await self._audit("loop.failed", child, error, reason)
                finally:  # a shutdown during the audit wait must not skip the give-up
                    if child.on_failed is not None:
                        child.on_failed()
                return
            child.state = ChildState.RESTARTING
            child.restarts += 1
            if self.metrics is not None:
                self.metrics.loop_restarts.labels(loop=child.name).inc()
            log.warning("loop.restarting", loop=child.name, restarts=child.restarts,
                        delay_s=round(delay, 2))
            await self._audit("loop.crashed", child, error, reason)
            await asyncio.sleep(delay)

    def _up(self, child: Child, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.loop_up.labels(loop=child.name).set(1 if up else 0)

    async def _audit(self, event: str, child: Child, error: str, reason: str) -> None:
        if self.audit is None:
            return
        fields: dict[str, object] = {"loop": child.name, "error": error, "reason": reason,
                                     "restarts": child.restarts}
        try:
            async with asyncio.timeout(AUDIT_TIMEOUT_S):
                await self.audit(event, fields)
        except Exception as exc:  # an audit failure must not stop supervision
            with contextlib.suppress(Exception):
                log.warning("loop.not_audited", loop=child.name, event=event,
                            error=type(exc).__name__)
