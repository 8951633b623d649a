"""`liaison admin status | backup | restore`: watch a node's queues, keep its data safe."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from liaison_net import config as config_mod
from liaison_net.cli import tables
from liaison_net.cli.admin_officers import config_option, json_option
from liaison_net.cli.admin_store import read_store
from liaison_net.cli.commands import Command
from liaison_net.errors import ConfigError

MAX_ERROR_CHARS = 1000  # a peer's last error, as stored; shown whole up to this


@click.command("status", cls=Command)
@config_option
@json_option
def status_cmd(config_path: Path, as_json: bool) -> None:
    """Queues, deliveries, refusals and backoff per peer, read from the node's store, and
    which worker of the node sends to each peer (its lease).

    Safe while the node runs (read-only).
    """
    cfg = config_mod.load(config_path)
    st = read_store(cfg, lambda store: store.status())
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(st), sort_keys=True))
        return
    table = tables.table(
        "peer", "queued", "delivered", "refused", "expired", "failed attempts", "last error",
        "sent by (lease holder)",
        title=f"node {cfg.id}: {st.envelopes} envelopes, {st.officers} officers in the "
              f"directory, {st.inbox_unacked} unacknowledged in inboxes, {st.audit_entries} "
              f"audit entries, {st.effects_pending} owed evidence/notices not yet issued",
        ids=())
    for peer in cfg.peers:
        backoff = st.backoff.get(peer.id, {})
        table.add_row(peer.id, str(st.queued.get(peer.id, 0)),
                      str(st.delivered.get(peer.id, 0)), str(st.refused.get(peer.id, 0)),
                      str(st.expired.get(peer.id, 0)), str(backoff.get("attempts", 0)),
                      str(backoff.get("last_error") or "")[:MAX_ERROR_CHARS],
                      str(st.senders.get(peer.id, {}).get("holder", "")))
    tables.console().print(table)


@click.command("backup", cls=Command)
@config_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="New file for the snapshot (never overwritten).")
def backup_cmd(config_path: Path, out: Path) -> None:
    """Take a consistent snapshot of the node's database while it runs."""
    cfg = config_mod.load(config_path)
    _sqlite_only(cfg, "pg_dump")
    from liaison_net.store import maintenance

    size = maintenance.backup(cfg.database, out)
    entries = maintenance.check_copy(out)
    click.echo(f"backup of node {cfg.id} written to {out} ({size} bytes, "
               f"{entries} audit entries verified)")


@click.command("restore", cls=Command)
@config_option
@click.option("--from", "source", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A file made by `liaison admin backup`.")
@click.option("--replace", is_flag=True, help="Overwrite the node's current database.")
def restore_cmd(config_path: Path, source: Path, replace: bool) -> None:
    """Restore a checked backup into a STOPPED node's data directory."""
    cfg = config_mod.load(config_path)
    _sqlite_only(cfg, "pg_restore")
    from liaison_net.store import maintenance

    entries = maintenance.restore(source, cfg.database, replace=replace)
    click.echo(f"restored node {cfg.id} from {source} ({entries} audit entries verified); "
               "start the node: queued envelopes resume, peers dedupe anything resent")


def _sqlite_only(cfg: config_mod.NodeConfig, tool: str) -> None:
    """Backup and restore copy the node's SQLite file; a PostgreSQL node's data is the
    server's, saved with PostgreSQL's own tools (docs/operations.md)."""
    if cfg.store.postgresql:
        raise ConfigError(f"node {cfg.id} keeps its data in PostgreSQL: use {tool} "
                          "(docs/operations.md, PostgreSQL)")
