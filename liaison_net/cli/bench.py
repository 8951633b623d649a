"""`liaison bench`: throughput, latency, catch-up, crash loss and memory, beside real brokers."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from liaison_net.cli.commands import Command

SCENARIO_HELP = ("light, relay, paced, outage, crash, baselines, ceiling or memory; repeat "
                 "or separate with commas (default: all). `baselines` runs the selected ones "
                 "of light/relay/paced/outage/crash against Mosquitto and RabbitMQ too (all "
                 "five if none is selected).")


@click.command(cls=Command)
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME", help=SCENARIO_HELP)
@click.option("--quick", is_flag=True,
              help="Small counts for CI (light 20/s for 3 s, relay 500, paced 200/s for 2 s, "
                   "outage 300, crash 500, memory 2,000); baselines only if their brokers are "
                   "installed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every figure and the machine's facts to this file.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where PKI, databases and broker state go (default: a new temporary "
                   "directory, removed at the end).")
@click.option("--keep", is_flag=True, help="Keep the work directory (logs, databases).")
@click.option("--node-log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Log level of the bench's node processes (info is what operators run).")
@click.option("--batch-size", type=click.IntRange(1, 256), default=32, show_default=True,
              help="Envelopes per request in our batched relay (POST /api/v1/envelopes/batch, "
                   "run after the single-submit relay; 1: no batched relay).")
@click.option("--light-seconds", type=click.FloatRange(1.0, 600.0), default=None,
              help="How long the light load runs (default 30 s, 3 s with --quick): a "
                   "longer quick light run gives a p99 of more than 60 envelopes.")
@click.option("--store", "store_names", default="sqlite", show_default=True,
              metavar="sqlite,postgresql",
              help="Where our two nodes keep their data; several (comma-separated) run our "
                   "scenarios once each and print them side by side. postgresql: a "
                   "throwaway cluster under the work directory (Debian's server binaries, "
                   "`make postgresql`), one database per node, one worker each.")
@click.option("--workers", "worker_counts", default="1", show_default=True,
              metavar="N,N,...",
              help="With --store postgresql: run the origin node as N `node serve` workers "
                   "on its one database, for each N given (1 to 8, comma-separated), the "
                   "client sessions spread over their officer URLs; relay and paced per "
                   "count, beside the other columns, with CPU per envelope summed over the "
                   "workers.")
@click.option("--verify-workers", type=click.IntRange(0, 8), default=None, metavar="N",
              help="`[workers] verify = N` in both our nodes' configs: N processes verify "
                   "bulk batches beside each node (0: all in the node's process). Unset: "
                   "the node's default (0), what operators run. "
                   "Their CPU and peak RSS count in their node's figures.")
def bench(scenarios: tuple[str, ...], quick: bool, json_path: Path | None,
          workdir: Path | None, keep: bool, node_log_level: str, batch_size: int,
          light_seconds: float | None, store_names: str, worker_counts: str,
          verify_workers: int | None) -> None:
    """Measure our broker beside Mosquitto and RabbitMQ, on 127.0.0.1, in one run.

    Each scenario is bounded in count and time. Prints a table (our figure, the baseline's,
    the ratio, the target from the issues and our ratio to it); exits 1 if any of our own
    scenarios failed to run. The scenarios (full counts):

    \b
    light     20/s for 30 s, far below capacity: latency p50/p95/p99/max from
              submit to the destination inbox, the delay an officer feels
    relay     20,000 envelopes as fast as the origin takes them: envelopes/s
              submit -> destination inbox, latency p50/p99; one envelope per
              request, 32 in flight (as the baselines' clients), then again
              through our batch submit (--batch-size per request, one request
              in flight per session), which is what our client library does,
              then through the submit stream (one envelope per websocket frame,
              each answered after its own commit, 32 in flight: what a system
              feeding the node uses, as AMQP publisher confirms)
    paced     1,000/s for 10 s: latency counted from when each envelope was due
    outage    destination stopped, 10,000 queued, destination back: catch-up rate
    crash     10,000 streamed, destination SIGKILLed twice: lost and duplicated
    memory    origin with 100,000 queued for a peer that is gone: peak RSS, bytes
              on disk per envelope
    ceiling   this machine's Ed25519, sealed-box and SQLite rates on one core
    baselines the same light/relay/paced/outage/crash on two bridged Mosquitto
              brokers and two RabbitMQ nodes with a shovel

    \b
    Around light, relay, paced, outage and crash, for the origin and for the
    destination: CPU µs per envelope (utime + stime from /proc, all the process
    did, divided by the envelopes accepted), peak RSS (VmHWM), and bytes on disk
    per envelope (growth of database + WAL, and that over the envelope's size).
    Beside them, the whole machine: the bench's own and its sink's CPU per
    envelope, all four processes together, and how busy the machine's cores
    were (/proc/stat); `ceiling` adds an fsync'd commit's latency, alone and
    two in series (the floor of any latency here).
    """
    from liaison_net.bench.report import ConsoleUi, table, write_json
    from liaison_net.bench.runner import bench as run_bench
    from liaison_net.bench.runner import selection

    try:
        selection(scenarios)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise click.BadParameter(f"{workdir} is not empty", param_hint="--workdir")
    stores = [n.strip() for n in store_names.split(",") if n.strip()]
    if not stores or set(stores) - {"sqlite", "postgresql"} or len(set(stores)) < len(stores):
        raise click.BadParameter("give sqlite, postgresql or both, once each",
                                 param_hint="--store")
    stores.sort(key=lambda n: n != "sqlite")  # SQLite first: the baselines use its bytes
    try:
        workers = sorted({int(n) for n in worker_counts.split(",") if n.strip()})
    except ValueError:
        workers = []
    if not workers or not all(1 <= n <= 8 for n in workers):
        raise click.BadParameter("give worker counts from 1 to 8, e.g. 1,2,4",
                                 param_hint="--workers")
    if workers != [1] and "postgresql" not in stores:
        raise click.BadParameter("several workers need --store postgresql",
                                 param_hint="--workers")
    # A file or pipe gets the full table, not one folded into 80 columns.
    err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)
    out = Console() if sys.stdout.isatty() else Console(width=160)
    doc, errors = run_bench(scenarios, quick=quick, ui=ConsoleUi(err), workdir=workdir,
                            keep=keep, log_level=node_log_level, batch_size=batch_size,
                            light_seconds=light_seconds, stores=stores, workers=workers,
                            verify_workers=verify_workers)
    out.print(table(doc["results"]))
    for note in doc["notes"]:
        out.print(f"  note: {note}", highlight=False)
    machine = doc["machine"]
    out.print(f"  machine: {machine['cpu_count']} x {machine['cpu_model']}, "
              f"{machine['memory_mb']} MB, Python {machine['python']}, {machine['date']}",
              highlight=False)
    if json_path is not None:
        write_json(json_path, doc)
        out.print(f"  figures written to {json_path}", highlight=False)
    if errors:
        sys.exit(1)
