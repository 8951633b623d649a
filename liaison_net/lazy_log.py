"""A structlog logger that imports structlog at its first call, not at its module's import.

structlog imports its console renderer, which imports rich and pygments: about 80 ms of CPU
that the store's modules paid at import for a logger that, in a `liaison admin` command
reading the store, never logs. A node logs from its start, so it pays the same as before.
"""

from __future__ import annotations

from typing import Any


class LazyLogger:
    """``structlog.get_logger(name)``, made when a method is first looked up on it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attribute)
