"""The arrow rules between the layers hold, and breaking one fails `make lint`.

The rules themselves are import-linter contracts in pyproject.toml ([tool.importlinter]);
docs/architecture.md explains them. Each test here plants one forbidden import in a copy of
the package and shows that the linter names the broken rule, so a contract that stopped
checking anything (a typo in a module name, a rule dropped) fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo",
                           str(tree / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "liaison_net", tmp_path / "liaison_net",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_arrow_rule(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "planted", "rule"), [
    ("core/envelope.py", "import liaison_net.store.database", "The core is sans-I/O"),
    ("core/policy.py", "import time", "The core is sans-I/O"),
    ("core/ownership.py", "import liaison_net.config", "The core is sans-I/O"),
    ("store/schema.py", "import aiohttp", "The store knows no transport"),
    ("services/notices.py", "import liaison_net.officer_api.routes",
     "What a node does (services)"),
    ("federation/protocol.py", "import liaison_net.cli.main", "The doors know no CLI"),
    ("officer_api/inbox_stream.py", "import liaison_net.federation.protocol",
     "independent doors"),
    ("client/reading.py", "import liaison_net.store.database", "The officer's library"),
    ("node.py", "import liaison_net.demo.runner", "The node never imports the drills"),
    ("workers/verify_worker.py", "import liaison_net.store.database",
     "The verification workers run pure core code"),
])
def test_a_planted_violation_breaks_its_rule(tree: Path, module: str, planted: str,
                                            rule: str) -> None:
    path = tree / "liaison_net" / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by the test\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    _, _, broken = result.stdout.partition("Broken contracts")
    assert rule in broken, result.stdout
