"""The readers every section shares: a table, a non-empty string, a bounded number.

Each raises a ConfigError naming the key as the operator wrote it (``delivery.batch_size``),
so a bad value is found in the file without reading the code."""

from __future__ import annotations

from typing import Any

from liaison_net.errors import ConfigError


def _table(data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] section is {'missing' if value is None else 'not a table'}")
    return value


def _str(table: dict[str, Any], name: str, key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    return value


def _num(table: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = table.get(name.split(".")[-1], default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number between {lo} and {hi}")
    return float(value)
