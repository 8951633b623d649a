"""The core is sans-I/O: it imports no event loop, network, database or logging library."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "liaison_net" / "core"
FORBIDDEN = {"asyncio", "aiohttp", "aiosqlite", "sqlite3", "structlog", "socket", "ssl",
             "logging", "time", "datetime", "os", "subprocess", "threading"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_has_modules() -> None:
    assert len(list(CORE.glob("*.py"))) >= 6


def test_core_imports_no_io_library() -> None:
    for path in CORE.glob("*.py"):
        roots = {name.split(".")[0] for name in _imports(path)}
        assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"


def test_only_crypto_module_imports_pynacl() -> None:
    users = {p.name for p in CORE.glob("*.py") if any(n.split(".")[0] == "nacl"
                                                      for n in _imports(p))}
    assert users == {"crypto.py"}


def test_the_import_check_sees_imports() -> None:
    """Guard against a vacuous check: the crypto module's nacl import is found."""
    assert "nacl.signing" in _imports(CORE / "crypto.py")
