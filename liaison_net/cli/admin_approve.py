"""`liaison admin admin-key | propose | approve | pending`: four-eyes administration.

With `[admin] four_eyes = true` in a node's config, enrolment, revocation and the node's
signing-key rotation need two administrators. Each has an admin key of their own
(`admin-key init`, passphrase-sealed, its public half listed under `[admin.admins]`). The
first runs `liaison admin propose ...`: the node records the signed proposal as a pending
operation and prints its id; a second runs `liaison admin approve OP` with their own key,
and the node carries it out (a rotation is then done by the approving command, with the
CA). The same administrator, or the same key under another name, cannot approve.

Like `enrol-officer` and `revoke`, each asks the running node over its admin socket, or,
when the node is not running, writes to its store itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from liaison_net import config as config_mod
from liaison_net.admin_api.wire import OCTETS, parse_key_id
from liaison_net.cli import tables
from liaison_net.cli.admin_officers import config_option, json_option
from liaison_net.cli.admin_store import read_store, write_via_node
from liaison_net.cli.commands import Command, Group
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import admin_ops, codec, crypto
from liaison_net.errors import ConfigError, Forbidden, Malformed

if TYPE_CHECKING:
    from liaison_net.services.admin_desk import AdminDesk
    from liaison_net.store.node_store import NodeStore

ADMIN_PASSPHRASE_ENV = "LIAISON_ADMIN_PASSPHRASE"
MAX_KEY_FILE_BYTES = 4096

admin_key_option = click.option(
    "--admin-key", "admin_key_path", required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Your admin key file (`liaison admin admin-key init`); its passphrase from "
         f"${ADMIN_PASSPHRASE_ENV} or the terminal.")


def _passphrase(*, new: bool) -> bytes:
    env = os.environ.get(ADMIN_PASSPHRASE_ENV)
    if env is not None:
        return env.encode()
    return str(click.prompt("admin key passphrase", hide_input=True,
                            confirmation_prompt=new, err=True)).encode()


def load_admin_key(path: Path) -> tuple[str, crypto.SigningKeyPair]:
    """(name, key) from an admin key file, opened with its passphrase."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read admin key {path}: {exc.strerror or exc}") from None
    d = codec.exact_map("admin key", codec.unpack(raw, what="admin key",
                                                  max_bytes=MAX_KEY_FILE_BYTES),
                        {"name", "sealed"})
    if not isinstance(d["name"], str) or not isinstance(d["sealed"], bytes):
        raise Malformed(f"{path} is not an admin key file")
    seed = crypto.open_with_passphrase(d["sealed"], _passphrase(new=False))
    return d["name"], crypto.signing_key_from_seed(seed)


@click.group("admin-key", cls=Group)
def admin_key() -> None:
    """Your own administrator key, for four-eyes administration ([admin] four_eyes)."""


@admin_key.command("init", cls=Command)
@click.argument("name")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the passphrase-sealed key (0600; never overwritten).")
def admin_key_init_cmd(name: str, out: Path) -> None:
    """Make an admin key for NAME; prints the line to add under [admin.admins]."""
    if not admin_ops.ADMIN_NAME_RE.fullmatch(name):
        raise Malformed(f"NAME must match {admin_ops.ADMIN_NAME_RE.pattern}")
    if out.exists():
        raise ConfigError(f"{out} exists: an admin key is never overwritten")
    key = crypto.generate_signing_key()
    sealed = crypto.seal_with_passphrase(key.seed, _passphrase(new=True))
    from liaison_net.pki import certificates

    certificates.write_secret(out, codec.pack({"name": name, "sealed": sealed}))
    click.echo(f"admin key of {name} written to {out} (0600). Add to every node's config:")
    click.echo("[admin.admins]")
    click.echo(f'{name} = "{key.public.hex()}"')


@click.group("propose", cls=Group)
def propose() -> None:
    """Propose an operation that a second administrator must approve ([admin] four_eyes)."""


def _propose(cfg: config_mod.NodeConfig, kind: str, args: bytes, admin_key_path: Path,
             as_json: bool) -> None:
    name, key = load_admin_key(admin_key_path)
    now = cli_clock().now_ms()
    raw = admin_ops.sign_op(admin_ops.AdminOp(kind, cfg.id, args, name, now), key)

    async def local(desk: AdminDesk) -> dict[str, Any]:
        return await desk.propose(raw)

    result, _by_node = write_via_node(cfg, "/admin/v1/ops/propose", raw, OCTETS, local)
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    click.echo(f"pending operation {result.get('op')} ({kind} on node {cfg.id}, proposed by "
               f"{name}): a second administrator runs `liaison admin approve "
               f"{result.get('op')} --admin-key THEIR_KEY --config ...`")


@propose.command("enrol-officer", cls=Command)
@click.argument("request_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@admin_key_option
@json_option
def propose_enrol_cmd(request_file: Path, config_path: Path, admin_key_path: Path,
                      as_json: bool) -> None:
    """Propose issuing a card from REQUEST_FILE (made by `liaison officer init`)."""
    cfg = config_mod.load(config_path)
    try:
        raw = request_file.read_bytes()[:admin_ops.MAX_ARGS_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"cannot read {request_file}: {exc.strerror or exc}") from None
    _propose(cfg, "enrol-officer", raw, admin_key_path, as_json)


@propose.command("revoke", cls=Command)
@click.argument("subject", type=click.Choice(["officer", "node"]))
@click.argument("principal")
@click.option("--reason", required=True, help="Why (recorded, federated and audited).")
@click.option("--key-id", "key_id_hex", default=None,
              help="The signing key to revoke (hex); as for `liaison admin revoke`.")
@config_option
@admin_key_option
@json_option
def propose_revoke_cmd(subject: str, principal: str, reason: str, key_id_hex: str | None,
                       config_path: Path, admin_key_path: Path, as_json: bool) -> None:
    """Propose revoking an officer's or this node's old signing key."""
    cfg = config_mod.load(config_path)
    parse_key_id(key_id_hex)
    args = json.dumps({"subject": subject, "principal": principal, "reason": reason,
                       "key_id": key_id_hex}, sort_keys=True).encode()
    _propose(cfg, "revoke", args, admin_key_path, as_json)


@propose.command("rotate-key", cls=Command)
@config_option
@admin_key_option
@json_option
def propose_rotate_cmd(config_path: Path, admin_key_path: Path, as_json: bool) -> None:
    """Propose rotating this node's signing key (the approver rotates it, with the CA)."""
    cfg = config_mod.load(config_path)
    _propose(cfg, "rotate-key", b"node", admin_key_path, as_json)


@click.command("approve", cls=Command)
@click.argument("op")
@config_option
@admin_key_option
@click.option("--ca", "ca_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The network CA directory: needed to approve a rotate-key operation.")
@json_option
def approve_cmd(op: str, config_path: Path, admin_key_path: Path, ca_dir: Path | None,
                as_json: bool) -> None:
    """Approve pending operation OP as the second administrator; the node carries it out."""
    cfg = config_mod.load(config_path)
    if not admin_ops.OP_ID_RE.fullmatch(op):
        raise Malformed("OP is the 24-character id `liaison admin propose` printed")
    if cfg.admin.four_eyes is False:
        raise Forbidden(f"[admin] four_eyes is off at node {cfg.id}: nothing needs approval")
    name, key = load_admin_key(admin_key_path)
    now = cli_clock().now_ms()
    raw = admin_ops.sign_approval(admin_ops.OpApproval(op, name, now), key)

    async def kind_of(store: NodeStore) -> str | None:
        found = await store.admin_ops.get(op)
        return found.kind if found is not None else None

    if read_store(cfg, kind_of) == "rotate-key" and ca_dir is None:
        raise click.UsageError("approving a rotate-key operation needs --ca (the network CA)")

    async def local(desk: AdminDesk) -> dict[str, Any]:
        return await desk.approve(raw)

    result, _by_node = write_via_node(cfg, "/admin/v1/ops/approve", raw, OCTETS, local)
    if result.get("kind") == "rotate-key" and ca_dir is not None:
        from liaison_net.cli.admin_keys import rotate

        result["rotation"] = rotate(cfg, "node", ca_dir)
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"operation {op} approved by {name} (proposed by {result.get('proposer')}): "
                   f"{result.get('outcome')}")


@click.command("pending", cls=Command)
@config_option
@click.option("--all", "show_all", is_flag=True, help="Include decided operations.")
@json_option
def pending_cmd(config_path: Path, show_all: bool, as_json: bool) -> None:
    """Operations waiting for a second administrator (four-eyes administration)."""
    cfg = config_mod.load(config_path)

    async def read(store: NodeStore) -> list[dict[str, Any]]:
        return [{"op": p.op, "kind": p.kind, "proposer": p.proposer, "proposed": p.proposed,
                 "expires": p.expires, "state": p.state, "decided_by": p.decided_by,
                 "outcome": p.outcome}
                for p in await store.admin_ops.listing(pending_only=not show_all)]

    rows = read_store(cfg, read)
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    table = tables.table("op", "kind", "proposer", "state", "decided by", "outcome",
                         title=f"administrative operations on node {cfg.id}")
    for r in rows:
        table.add_row(r["op"], r["kind"], r["proposer"], r["state"], r["decided_by"] or "",
                      r["outcome"] or "")
    tables.console().print(table)
