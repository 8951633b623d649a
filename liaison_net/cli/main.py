"""The `liaison` command: one entry point, one sub-group per audience.

``admin`` is for the people who run the PKI and the nodes, ``node`` runs a node process,
officer commands (send, inbox, read, ...) sit at the top level because officers type them
all day. Each group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import sys

import click

from liaison_net.cli.edge_clock import clock_offset_option, install
from liaison_net.errors import LiaisonError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="liaison_net")
@clock_offset_option
@click.pass_context
def cli(ctx: click.Context, clock_offset_ms: int | None) -> None:
    """liaison_net: secure federated messaging for the Benelux police liaison network."""
    install(ctx, clock_offset_ms)


def _register() -> None:
    # Imported here so that each group module can import `cli` helpers without cycles.
    from liaison_net.cli import admin, admin_keys, admin_ops, node, officer
    from liaison_net.cli.bench import bench
    from liaison_net.cli.chaos import chaos
    from liaison_net.cli.demo import demo

    cli.add_command(admin.admin)
    cli.add_command(node.node)
    cli.add_command(demo)
    cli.add_command(bench)
    cli.add_command(chaos)
    officer.register(cli, admin=admin.admin)
    admin_ops.register(admin.admin)
    admin_keys.register(admin.admin)
    from liaison_net.cli import forwarding, requests

    forwarding.register(cli)
    requests.register(cli)


_register()


def main() -> None:
    """Console-script entry: typed errors become one clear line and exit code 2."""
    try:
        code = cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LiaisonError as exc:
        click.echo(f"error: {exc.code}: {exc.detail}", err=True)
        sys.exit(2)
    # In non-standalone mode click returns ctx.exit(n)'s code instead of exiting.
    if isinstance(code, int) and code != 0:
        sys.exit(code)
