"""[workers]: envelope verification in processes beside the node's (workers/): how many
(``verify``) and how long one may stay silent on a batch (``verify_timeout_s``)."""

from __future__ import annotations

import os
from typing import Any

from liaison_net.config.fields import _num
from liaison_net.errors import ConfigError

#: [workers] verify when unset: 0, verification in the node's process. "auto" (a worker on
#: 2+ cores) gained 3-4 % at catch-up on the merged tree and cost the destination 10-20 %
#: more CPU per envelope and a longer single-submit p99 (docs/performance.md, "Full bench
#: after the issue-16 lanes of 4 December (fifth round)"): an operator's choice, not a default.
DEFAULT_VERIFY: int | str = 0


def auto_verify_workers(cpus: int | None) -> int:
    """``[workers] verify = "auto"`` (an operator's choice): one worker when the machine has a
    second core for it, else none (on one core a worker only adds its round trips)."""
    return 1 if (cpus or 1) >= 2 else 0


def _verify_workers(table: dict[str, Any]) -> int:
    """[workers] verify: 0 (the default: verify in the node's process) to 8 processes,
    started at the node's first bulk batch, or "auto" (``auto_verify_workers``)."""
    if unknown := set(table) - {"verify", "verify_timeout_s"}:
        raise ConfigError(f"unknown workers key(s): {', '.join(sorted(unknown))}")
    value = table.get("verify", DEFAULT_VERIFY)
    if value == "auto":
        return auto_verify_workers(os.cpu_count())
    if not isinstance(value, int):
        raise ConfigError('workers.verify must be "auto" or a whole number between 0 and 8')
    return int(_num(table, "workers.verify", 0, 0, 8))


def _verify_timeout(table: dict[str, Any]) -> float:
    """[workers] verify_timeout_s: a worker silent this long on a batch is killed, the batch
    verified in the node's process."""
    return _num(table, "workers.verify_timeout_s", 10.0, 0.5, 120.0)
