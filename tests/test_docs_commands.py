"""The docs cannot drift from the CLI: README's walkthrough runs for real against a demo
network, and every `liaison` command in README.md and docs/operations.md parses."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from liaison_net.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SKIP = {"make demo", "make test", ". .venv/bin/activate"}


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """Logical lines (backslash continuations joined), comments dropped."""
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split("   #")[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def liaison_invocations(text: str) -> list[list[str]]:
    """Every `liaison ...` command in the shell blocks, including inside $( ... )."""
    found = []
    for block in sh_blocks(text):
        for line in commands(block):
            for match in re.finditer(r"liaison (.*?)(?:\)|\|\||\||$)", line):
                args = shlex.split(match.group(1).replace('"$ID"', "01KAT1ZKB0000000000000000"))
                found.append(args)
    return found


def _rest(ctx: click.Context) -> list[str]:
    with warnings.catch_warnings():  # protected_args: deprecated in click 8.2, still filled
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*ctx.protected_args, *ctx.args]


def parse(args: list[str]) -> None:
    """Resolve the command chain and parse every option, as click would before running."""
    ctx = cli.make_context("liaison", list(args), resilient_parsing=False)
    command: click.Command = cli
    rest = _rest(ctx)
    while isinstance(command, click.Group) and rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"unknown command {name} in {args}"
        ctx = sub.make_context(name or "", list(rest), parent=ctx, resilient_parsing=False)
        command, rest = sub, _rest(ctx)
    # A group runs on its own only if it says so (`liaison directory` lists, `... search`
    # searches); any other group needs a subcommand.
    assert not isinstance(command, click.Group) or command.invoke_without_command, \
        f"incomplete command: liaison {args}"


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md"])
def test_every_documented_command_parses(doc: str) -> None:
    invocations = liaison_invocations((ROOT / doc).read_text())
    assert len(invocations) >= 8, f"{doc}: too few commands found; is the parser broken?"
    for args in invocations:
        if args == ["--version"]:
            continue
        try:
            parse(args)
        except click.UsageError as exc:
            raise AssertionError(f"{doc}: `liaison {' '.join(args)}`: {exc}") from exc


def test_parser_catches_a_wrong_option() -> None:
    with pytest.raises(click.UsageError):
        parse(["admin", "status", "--config", "x.toml", "--no-such-option"])
    with pytest.raises(click.UsageError):
        parse(["admin", "no-such-command"])


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """The officer's and the administrator's first steps, run by bash, exactly as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it on one machine")[1].split("## Where to read on")[0]
    lines = [c for block in sh_blocks(section) for c in commands(block) if c not in SKIP]
    assert any(line.startswith("liaison demo --keep") for line in lines)
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("LIAISON_KEYSTORE", None)
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=540)  # a hang backstop: 228 s at load 20
        assert proc.returncode == 0, f"README walkthrough failed:\n{proc.stdout[-4000:]}\n" \
                                     f"{proc.stderr[-4000:]}"
        out = proc.stdout
        assert "White van, plate 1-ABC-123" in out  # `read` showed the decrypted subject
        assert "refused, as it should be" in out
        assert "policy.share_with" in proc.stderr
        assert "audit chain OK" in out
        assert "four-eyes: held" in out and "approved by nl/desk (verified)" in out
        assert "held: a second officer of your unit must approve it" in proc.stderr
        assert (tmp_path / "demo-net" / "backups" / "nl.sqlite3").is_file()
    finally:
        pids = tmp_path / "demo-net" / "pids"
        if pids.is_file():
            for pid in pids.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_every_toml_snippet_in_the_docs_is_a_valid_config_section() -> None:
    """A snippet an operator copies into a node config must load: merged into a shipped
    config, every ```toml block of the docs passes the same validation a node start does."""
    import tomllib

    from liaison_net import config

    base_path = ROOT / "node_configs" / "nl.toml"
    base = tomllib.loads(base_path.read_text(encoding="utf-8"))
    snippets = [block for doc in ("README.md", "docs/operations.md")
                for block in re.findall(r"```toml\n(.*?)```",
                                        (ROOT / doc).read_text(encoding="utf-8"), flags=re.S)]
    assert len(snippets) >= 2, "the docs' config snippets were not found"
    for snippet in snippets:
        section = tomllib.loads(snippet)
        loaded = config.parse({**base, **section}, base_path)
        for table, values in section.items():
            assert isinstance(values, dict) and values, f"[{table}] snippet is empty"
        assert loaded.id == "nl"
