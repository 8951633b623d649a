"""`liaison demo`: the README's demo, a real four-node network on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from liaison_net.cli.commands import Command


@click.command("demo", cls=Command)
@click.option("--dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path),
              help="New or empty directory for the PKI, configs, databases, logs and keystores "
                   "[default: a temporary directory, removed after a successful run].")
@click.option("--json", "as_json", is_flag=True,
              help="Print only the summary, as JSON (counts, envelopes, refusals, checks, PIDs).")
@click.option("--keep", is_flag=True,
              help="Leave the network running afterwards and print the commands to use it.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(5, 3600), default=120.0,
              show_default=True, help="Seconds the whole demo may take; every wait is bounded "
                                      "by it.")
def demo(demo_dir: Path | None, as_json: bool, keep: bool, timeout_s: float) -> None:
    """Run the demo network: four national nodes (be, nl, lu, de-nw), four officers.

    Creates a network CA and the nodes with the admin code, starts one `liaison node serve`
    process per node on 127.0.0.1, enrols an officer on each, and tells a short story: a
    Benelux-only alert from NL reaches BE and LU; the same alert for DE-NW is refused by the
    sender's client and, forced through the API, by the NL node; a TLP:GREEN community
    alert reaches DE-NW; everyone verifies, decrypts and acknowledges; LU sends a FLASH
    alert. Then every node process is stopped (unless --keep).

    Exit code 0 when everything expected happened, 1 when something did not, 130 when
    interrupted.
    """
    # Imported here: `liaison --help` and the officer commands need none of it.
    from liaison_net.demo.report import Progress, dumps
    from liaison_net.demo.runner import run_demo

    progress = Progress(quiet=as_json)
    result = run_demo(root=demo_dir, keep=keep, timeout_s=timeout_s, progress=progress)
    if as_json:
        click.echo(dumps(result.summary))
    else:
        progress.finish(result.outcome, result.summary)
    # SystemExit, not ctx.exit: `main` runs click with standalone_mode=False, where
    # ctx.exit's code would be returned and dropped.
    raise SystemExit(result.exit_code)
