"""`liaison node ...`: run a national node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import click
import structlog

from liaison_net import config as node_config
from liaison_net import logs
from liaison_net.cli.commands import Group
from liaison_net.cli.edge_clock import clock_offset_option
from liaison_net.clock import Clock

log = structlog.get_logger("liaison.node")


@click.group(cls=Group)
def node() -> None:
    """Run a national node."""


@node.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The node's TOML file, e.g. node_configs/nl.toml.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--event-loop", "event_loop", default="uvloop", show_default=True,
              envvar="LIAISON_EVENT_LOOP", type=click.Choice(["uvloop", "asyncio"]),
              help="uvloop (libuv; docs/performance.md has the figures) or the standard "
                   "library's loop. Without uvloop installed, the standard one.")
@clock_offset_option
@click.pass_context
def serve(ctx: click.Context, config_path: Path, log_level: str, event_loop: str,
          clock_offset_ms: int | None) -> None:
    """Serve the federation API (mutual TLS) and the officer API until SIGTERM or Ctrl-C.

    Logs are JSON events on stderr. The database, under the config's data_dir, is created
    and migrated on first start. ``--clock-offset-ms`` (here or before ``node``) overrides
    the config's ``[clock] drill_offset_ms`` for a drill.
    """
    from liaison_net.node import Node

    cfg = node_config.load(config_path)
    logs.configure(log_level, node=cfg.id)
    if clock_offset_ms is None:  # given before `node`, or by the environment
        clock_offset_ms = ctx.find_root().params.get("clock_offset_ms")
    clock = Clock(cfg.clock_offset_ms if clock_offset_ms is None else clock_offset_ms)
    with asyncio.Runner(loop_factory=_loop_factory(event_loop)) as runner:
        runner.run(Node(cfg, clock).serve())


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for and installed (it is a dependency, but a platform
    without a wheel still runs the node), else None: the standard library's."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("node.event_loop", event_loop="asyncio",
                        reason="uvloop is not installed; the standard loop runs the node")
            return None
        log.info("node.event_loop", event_loop="uvloop")
        return uvloop.new_event_loop
    log.info("node.event_loop", event_loop="asyncio")
    return None
