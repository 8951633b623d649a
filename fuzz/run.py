"""Run one harness for a bounded number of executions or seconds, and report what it did.

``python -m fuzz <name> [--runs N | --seconds S] [--workdir DIR]`` writes the harness's
seeds into ``DIR/corpus`` (which keeps growing across runs), runs the harness under libFuzzer
in a child process (atheris ends the process when it stops), and prints executions, exec/s,
corpus size, coverage and findings. Exit status 0 means: it ran, it executed inputs, and it
found nothing. A crash input is written to ``DIR/artifacts`` and printed as a bytes literal,
ready for tests/fuzz/test_fuzz_regressions.py; ``--minimize FILE`` shrinks such an input first.
``--coverage`` replays the corpus and prints which lines of the target modules it reaches.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzz import HARNESSES

REPO = Path(__file__).resolve().parent.parent
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+(.*)$", re.MULTILINE)
_FIELD = re.compile(r"(cov|ft): (\d+)")
_FINDING = re.compile(r"Uncaught Python exception|ERROR: libFuzzer|ERROR: AddressSanitizer")


@dataclass
class Result:
    """What one bounded run did, parsed from libFuzzer's output."""

    harness: str
    returncode: int
    executions: int = 0
    exec_per_sec: int = 0
    new_units: int = 0
    corpus_files: int = 0
    coverage: int = 0  # libFuzzer "cov": instrumented edges reached
    features: int = 0  # libFuzzer "ft"
    findings: list[str] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.executions > 0 and not self.findings

    def summary(self) -> str:
        lines = [
            f"harness      {self.harness}",
            f"executions   {self.executions}",
            f"exec/s       {self.exec_per_sec}",
            f"corpus       {self.corpus_files} files ({self.new_units} new this run)",
            f"coverage     cov {self.coverage} ft {self.features}",
            f"findings     {len(self.findings) or 'none'}",
        ]
        lines += [f"  {f}" for f in self.findings]
        for path in self.artifacts:
            data = path.read_bytes()
            shown = repr(data[:400]) + (f" ... ({len(data)} bytes)" if len(data) > 400 else "")
            lines.append(f"  input {path}: {shown}")
        lines.append(f"status       {'ok' if self.ok else 'FAILED'} (exit {self.returncode})")
        return "\n".join(lines)


def default_workdir(name: str) -> Path:
    return Path(tempfile.gettempdir()) / "liaison-fuzz" / name


def write_seeds(corpus: Path, seeds: Mapping[str, bytes]) -> int:
    """Write each seed under a content-addressed name (as libFuzzer names corpus files)."""
    corpus.mkdir(parents=True, exist_ok=True)
    for data in seeds.values():
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds)


def run_module(
    module: str,
    seeds: Mapping[str, bytes],
    workdir: Path,
    *,
    name: str | None = None,
    runs: int | None = None,
    seconds: int | None = None,
    extra_path: Sequence[Path] = (),
    echo: Callable[[str], None] | None = None,
) -> Result:
    """Fuzz ``module`` (which has ``main()``) from ``seeds`` for a bounded budget."""
    if runs is None and seconds is None:
        raise ValueError("give runs or seconds: a run must be bounded")
    corpus, artifacts = workdir / "corpus", workdir / "artifacts"
    write_seeds(corpus, seeds)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    args = [sys.executable, "-m", module, str(corpus), f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1", "-timeout=30", "-rss_limit_mb=2048", "-max_len=65536",
            "-len_control=100"]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={seconds}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(p) for p in extra_path] + [str(REPO)] + [env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    started = time.monotonic()
    out: list[str] = []
    for line in proc.stdout:
        out.append(line)
        if echo is not None:
            echo(line.rstrip("\n"))
    returncode = proc.wait()
    elapsed = time.monotonic() - started
    result = Result(harness=name or module, returncode=returncode, output="".join(out))
    _parse(result, result.output)
    if result.exec_per_sec == 0 and result.executions:
        # libFuzzer divides by whole seconds (0 for a short run); count start-up time instead.
        result.exec_per_sec = int(result.executions / max(elapsed, 1e-3))
    result.corpus_files = sum(1 for _ in corpus.iterdir())
    result.artifacts = sorted(set(artifacts.iterdir()) - before)
    if returncode != 0 and not result.findings:
        result.findings.append(f"fuzzer exited with status {returncode}")
    return result


def _parse(result: Result, output: str) -> None:
    stats = {k: int(v) for k, v in _STAT.findall(output)}
    result.executions = stats.get("number_of_executed_units", 0)
    result.exec_per_sec = stats.get("average_exec_per_sec", 0)
    result.new_units = stats.get("new_units_added", 0)
    for _, rest in _STATUS.findall(output):  # the last status line has the final figures
        fields = dict(_FIELD.findall(rest))
        result.coverage = int(fields.get("cov", result.coverage))
        result.features = int(fields.get("ft", result.features))
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if _FINDING.search(line):
            detail = next((m for m in lines[i + 1:i + 12] if re.match(r"^\w+(Error|Exception)", m)),
                          "")
            result.findings.append(f"{line.strip()} {detail}".strip())
    if result.findings:
        # One crash reads as several libFuzzer lines; keep the Python exception when present.
        python = [f for f in result.findings if "Uncaught" in f]
        result.findings = python or result.findings[:1]


def run_harness(name: str, *, runs: int | None = None, seconds: int | None = None,
                workdir: Path | None = None,
                echo: Callable[[str], None] | None = None) -> Result:
    """Run a harness of ``fuzz.HARNESSES`` from its seeds (built now, with the real core)."""
    from fuzz import seeds  # imports liaison_net; fine here, the fuzzer runs in a child

    return run_module(HARNESSES[name], seeds.SEEDS[name](), workdir or default_workdir(name),
                      name=name, runs=runs, seconds=seconds, echo=echo)


def minimize(test_one_input: Callable[[bytes], None], data: bytes, *,
             budget: int = 20_000) -> bytes:
    """Shrink a failing input by deleting chunks while it fails with the same exception type.

    In-process delta debugging: libFuzzer's own -minimize_crash re-executes argv[0], which
    a harness run as ``python -m`` is not.
    """

    def failure(candidate: bytes) -> type[BaseException] | None:
        try:
            test_one_input(candidate)
        except Exception as exc:  # any exception escaping a harness is the finding
            return type(exc)
        return None

    kind = failure(data)
    if kind is None:
        raise ValueError("the input does not fail the harness")
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and budget > 0:
        i, shrunk = 0, False
        while i < len(data) and budget > 0:
            candidate = data[:i] + data[i + chunk:]
            budget -= 1
            if failure(candidate) is kind:
                data, shrunk = candidate, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return data


#: The modules each harness is about, for the line-coverage replay.
TARGETS: dict[str, tuple[str, ...]] = {
    "envelope": ("core/envelope.py", "core/sealing.py", "core/codec.py", "core/ownership.py",
                 "core/signals.py", "core/ids.py"),
    "transaction": ("federation/protocol.py", "core/codec.py"),
    "signal": ("core/signals.py", "core/codec.py"),
    "policy": ("core/ownership.py", "core/policy.py", "core/codec.py"),
}


def _code_lines(path: Path) -> set[int]:
    """Lines of code inside the functions of a source file (not run at import time)."""
    lines: set[int] = set()
    todo = [compile(path.read_text(), str(path), "exec")]
    while todo:
        code = todo.pop()
        if code.co_flags & inspect.CO_OPTIMIZED:  # a function body, not module or class body
            lines.update(line for _, _, line in code.co_lines() if line is not None)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return lines


def line_coverage(name: str, corpus: Path) -> dict[str, tuple[set[int], set[int]]]:
    """Replay a corpus through a harness (uninstrumented) and record the target lines hit.

    libFuzzer's "cov" counts edges of everything instrumented; this names, per target
    module, which of its lines the corpus reaches, so a gap points at a branch to seed.
    """
    import liaison_net

    root = Path(liaison_net.__file__).parent
    files = {str(root / t): t for t in TARGETS[name]}
    hit: dict[str, set[int]] = {t: set() for t in TARGETS[name]}

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        target = files.get(frame.f_code.co_filename)
        if target is None:
            return None
        if event in ("call", "line"):
            hit[target].add(frame.f_lineno)
        return tracer

    harness = importlib.import_module(HARNESSES[name])
    sys.settrace(tracer)
    try:
        for path in sorted(corpus.iterdir()):
            harness.test_one_input(path.read_bytes())
    finally:
        sys.settrace(None)
    return {t: (hit[t], _code_lines(root / t)) for t in TARGETS[name]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("harness", choices=sorted(HARNESSES))
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int, help="number of executions (default 10000)")
    budget.add_argument("--seconds", type=int, help="wall-clock budget")
    parser.add_argument("--workdir", type=Path,
                        help="corpus/ and artifacts/ go here (default: $TMPDIR/liaison-fuzz/NAME)")
    parser.add_argument("--verbose", action="store_true", help="echo libFuzzer's output")
    parser.add_argument("--minimize", type=Path, metavar="CRASH",
                        help="shrink a crash input of this harness and print it as bytes")
    parser.add_argument("--coverage", action="store_true",
                        help="replay the corpus and print line coverage of the target modules")
    args = parser.parse_args(argv)
    if args.coverage:
        corpus = (args.workdir or default_workdir(args.harness)) / "corpus"
        for target, (hit, lines) in line_coverage(args.harness, corpus).items():
            missed = sorted(lines - hit)
            print(f"{target:28} {len(lines & hit):4}/{len(lines):<4} lines"
                  f"  missed: {missed[:40]}{' ...' if len(missed) > 40 else ''}")
        return 0
    if args.minimize is not None:
        harness = importlib.import_module(HARNESSES[args.harness])
        print(repr(minimize(harness.test_one_input, args.minimize.read_bytes())))
        return 0
    runs = args.runs if args.runs is not None or args.seconds is not None else 10_000
    result = run_harness(args.harness, runs=runs, seconds=args.seconds, workdir=args.workdir,
                         echo=print if args.verbose else None)
    if not args.verbose and not result.ok:
        print(result.output[-4000:])
    print(result.summary())
    return 0 if result.ok else 1
