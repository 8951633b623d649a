"""`liaison node ...`: run a national node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from liaison_net import config as node_config
from liaison_net import logs


@click.group()
def node() -> None:
    """Run a national node."""


@node.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The node's TOML file, e.g. node_configs/nl.toml.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config_path: Path, log_level: str) -> None:
    """Serve the federation API (mutual TLS) and the officer API until SIGTERM or Ctrl-C.

    Logs are JSON events on stderr. The database, under the config's data_dir, is created
    and migrated on first start.
    """
    from liaison_net.node import Node

    cfg = node_config.load(config_path)
    logs.configure(log_level, node=cfg.id)
    asyncio.run(Node(cfg).serve())
