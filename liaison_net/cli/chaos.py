"""`liaison chaos`: kill nodes and cut links under load, then account for every envelope."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from liaison_net.cli.commands import Command

if TYPE_CHECKING:
    from liaison_net.chaos.soak import Soak


@click.command(cls=Command)
@click.option("--kills", type=click.IntRange(0, 100_000), default=20, show_default=True,
              help="How many times a random node is SIGKILLed (and restarted).")
@click.option("--partitions", type=click.IntRange(0, 100_000), default=20, show_default=True,
              help="How many times a random pair of nodes is cut apart (and healed).")
@click.option("--duration", type=click.FloatRange(10, 86_400), default=180.0,
              show_default=True, help="Seconds of traffic and faults (setup and drain extra).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Seed of the fault plan and the traffic (default: random, printed).")
@click.option("--rate", type=click.FloatRange(0.5, 1000), default=8.0, show_default=True,
              help="Envelopes per second, all officers together.")
@click.option("--officers-per-node", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--drain-timeout", type=click.FloatRange(5, 3600), default=180.0,
              show_default=True, help="Seconds allowed, after healing, for every outbox to "
                                      "empty and every owed copy to arrive.")
@click.option("--effects-timeout", type=click.FloatRange(1, 3600), default=60.0,
              show_default=True, help="Seconds allowed, after the drain, for the effects "
                                      "(evidence, notices, due times, receipts) to stop "
                                      "changing before they are counted.")
@click.option("--rss-limit-mb", type=click.FloatRange(10, 100_000), default=400.0,
              show_default=True, help="Fail if any node's RSS goes above this.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures as JSON on stdout (progress still goes to stderr).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where PKI, databases and logs go (default: a new temporary directory, "
                   "removed after a clean run, kept after a failed one).")
@click.option("--keep", is_flag=True, help="Keep the work directory even after a clean run.")
@click.option("--store", type=click.Choice(["sqlite", "postgresql"]), default="sqlite",
              show_default=True,
              help="Where the nodes keep their data: their SQLite files, or a throwaway "
                   "PostgreSQL cluster under the work directory (Debian's server binaries, "
                   "`make postgresql`), one database per node.")
@click.option("--node-log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def chaos(kills: int, partitions: int, duration: float, seed: int | None, rate: float,
          officers_per_node: int, drain_timeout: float, effects_timeout: float,
          rss_limit_mb: float, as_json: bool,
          workdir: Path | None, keep: bool, store: str, node_log_level: str) -> None:
    """Soak four real nodes under SIGKILLs and partitions, then count every envelope.

    Officers on every node send continuously (mixed tags and precedences, some built to be
    refused). Nodes are killed and restarted and links cut and healed at random times from
    the seed; then everything is healed, the outboxes drain, and the nodes' databases
    (SQLite files, or PostgreSQL with --store postgresql) must show every accepted
    envelope in each recipient's inbox exactly once, every refused one in none, each
    effect it owes exactly once (evidence at the sender, non-delivery notices, due times,
    disclosure receipts), every audit chain intact and every node's memory bounded. Exits 1 if not.
    """
    from liaison_net.chaos.plan import make_plan
    from liaison_net.chaos.report import ConsoleUi, dumps, summary_lines, table
    from liaison_net.chaos.soak import NODE_IDS, Soak, SoakOptions

    seed = secrets.randbelow(2**31) if seed is None else seed
    options = SoakOptions(kills=kills, partitions=partitions, duration_s=duration, seed=seed,
                          rate=rate, officers_per_node=officers_per_node,
                          drain_timeout_s=drain_timeout, effects_timeout_s=effects_timeout,
                          rss_limit_mb=rss_limit_mb,
                          log_level=node_log_level, store=store)
    try:
        make_plan(seed=seed, nodes=NODE_IDS, kills=kills, partitions=partitions,
                  duration_s=duration, shape=options.shape)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise click.BadParameter(f"{workdir} is not empty", param_hint="--workdir")
    root = workdir or Path(tempfile.mkdtemp(prefix="liaison-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)
    out = Console() if sys.stdout.isatty() else Console(width=160)
    with ConsoleUi(err) as ui:
        soak = Soak(options, root, ui)
        try:
            doc = asyncio.run(_run(soak))
        except (Exception, asyncio.CancelledError, KeyboardInterrupt) as exc:
            why = "interrupted" if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) \
                else f"{type(exc).__name__}: {exc}"
            err.print(f"[red]the soak could not complete: {why}[/red]", highlight=False)
            err.print(f"work directory kept: {root}", highlight=False)
            sys.exit(1)
    if as_json:
        click.echo(dumps(doc), nl=False)
        for line in summary_lines(doc):
            err.print(line, highlight=False)
    else:
        out.print(table(doc))
        for line in summary_lines(doc):
            out.print(line, highlight=False)
    if doc["ok"] and not keep and workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    if not doc["ok"]:
        sys.exit(1)


async def _run(soak: Soak) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so `Soak.run` stops every node it started.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await soak.run()
