"""`liaison admin keys list | rotate-key | revoke | revocations`: keys under live traffic.

A node signing key change (rotation, replacement, revocation) needs the co-signatures of
the other national nodes: see ``admin_cosign``.

Rotation writes new files into the node's certificate directory; the running node picks
them up within a second (see ``key_watch``) and peers accept the old signing key for the
configured grace period (``[auth] key_grace_s``). A revocation is asked of the running
node (``cli.admin_store``): it signs it with its key, stores it and pushes it to every
peer until each has answered; from its effective time on, the key is refused everywhere.
Listings read the node's store read-only.

The certificates (cryptography), the store and the desk are imported in the commands that
use them: `revoke officer` beside a running node needs none of them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from liaison_net import config as config_mod
from liaison_net.admin_api.wire import parse_key_id, revoke_answer
from liaison_net.cli import tables
from liaison_net.cli.admin_officers import config_option, json_option
from liaison_net.cli.admin_store import read_store, write_via_node
from liaison_net.cli.commands import Command, Group, LazyGroup, LazyTable
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import crypto, rotation
from liaison_net.errors import Forbidden, Malformed, NotFound

if TYPE_CHECKING:
    from liaison_net.services.admin_desk import AdminDesk
    from liaison_net.store.key_store import KnownKey, KnownRevocation
    from liaison_net.store.node_store import NodeStore


def _now_ms() -> int:
    return cli_clock().now_ms()


def _age_days(ms: int | float) -> str:
    return f"{max(0.0, (_now_ms() - ms) / 86_400_000):.1f}d"


#: `liaison admin keys` sub-commands of ``admin_cosign`` -> (its "module:attribute", help).
_COSIGN_COMMANDS: LazyTable = {
    "apply": ("liaison_net.cli.admin_cosign:apply_cmd",
              "Apply this node's co-signed key change: install the new key (the running node "
              "switches within a second) or record the revocation; it then travels to every "
              "peer."),
    "cosign": ("liaison_net.cli.admin_cosign:cosign_cmd",
               "Review another national node's key change and co-sign it with this node's "
               "key."),
    "pending": ("liaison_net.cli.admin_cosign:pending_cmd",
                "Key changes waiting for co-signatures: this node's own (prepared, not "
                "applied) and those peers presented that this node refused (without the "
                "threshold, out of order)."),
}


@click.group("keys", cls=LazyGroup, lazy=_COSIGN_COMMANDS)
def keys() -> None:
    """Inspect the keys this node knows; review and co-sign node key changes."""


@keys.command("list")
@config_option
@json_option
def keys_list_cmd(config_path: Path, as_json: bool) -> None:
    """Every key the node knows: node signing and TLS, peers' node keys, officers' keys,
    with id, age, state (active, grace, retired, revoked) and grace end."""
    cfg = config_mod.load(config_path)
    rows = _key_rows(cfg)
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    table = tables.table("kind", "owner", "key id", "age", "state", "grace until / reason",
                         title=f"keys known to node {cfg.id}", ids=("key id",))
    for r in rows:
        table.add_row(r["kind"], r["owner"], r["key_id"], r["age"], r["state"],
                      str(r.get("grace_until") or r.get("reason") or ""))
    tables.console().print(table)


def _key_rows(cfg: config_mod.NodeConfig) -> list[dict[str, Any]]:
    from cryptography import x509

    from liaison_net.pki import certificates, pseudonym_key_files

    paths = certificates.NodePaths.under(cfg.cert_dir, cfg.id)
    now = _now_ms()
    rows: list[dict[str, Any]] = []
    tls = x509.load_pem_x509_certificate(paths.tls_cert.read_bytes())
    rows.append({"kind": "tls", "owner": cfg.id, "key_id": format(tls.serial_number, "x")[:32],
                 "age": _age_days(tls.not_valid_before_utc.timestamp() * 1000),
                 "state": "active", "grace_until": None,
                 "not_after": tls.not_valid_after_utc.isoformat()})
    signing = x509.load_pem_x509_certificate(paths.signing_cert.read_bytes())
    own = crypto.signing_key_from_seed(paths.signing_key.read_bytes())
    rows.append({"kind": "node-signing", "owner": cfg.id, "key_id": own.key_id.hex(),
                 "age": _age_days(signing.not_valid_before_utc.timestamp() * 1000),
                 "state": "active", "grace_until": None})
    if (cfg.cert_dir / pseudonym_key_files.CURRENT).exists():
        ring = pseudonym_key_files.load(cfg.cert_dir)
        for i, key_id in enumerate(ring.key_ids):
            rows.append({"kind": "network-pseudonym", "owner": "network",
                         "key_id": key_id.hex(), "age": "",
                         "state": "active" if i == 0 else "grace", "grace_until": None})
    if not cfg.store.postgresql and not cfg.database.is_file():
        return rows

    async def read(store: NodeStore) -> tuple[list[KnownKey], list[KnownRevocation]]:
        return await store.keys.known_keys(), await store.keys.revocations()

    known, revocations = read_store(cfg, read)
    revoked = {r.key_id: r for r in revocations}

    def state(key: KnownKey) -> dict[str, Any]:
        if key.key_id in revoked and now >= revoked[key.key_id].effective:
            return {"state": "revoked", "reason": revoked[key.key_id].reason}
        if key.grace_until is None:
            return {"state": "active", "grace_until": None}
        return {"state": "grace" if now < key.grace_until else "retired",
                "grace_until": datetime.fromtimestamp(key.grace_until / 1000, UTC).isoformat()}

    for key in known:
        row: dict[str, Any] = {"kind": key.kind, "owner": key.owner,
                               "key_id": key.key_id.hex(), "age": "", **state(key)}
        if key.valid_until is not None:
            row["valid_until"] = datetime.fromtimestamp(key.valid_until / 1000,
                                                        UTC).isoformat()
        rows.append(row)
    return rows


@click.command("rotate-key", cls=Command)
@click.argument("which", type=click.Choice(["node", "tls"]))
@config_option
@click.option("--ca", "ca_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory holding the network CA (ca.key, ca.crt): the CA certifies the "
                   "new key. Bring it from offline storage for the operation.")
@click.option("--key-lost", is_flag=True,
              help="Emergency (node): the current key is lost or stolen; the new key comes "
                   "without its signature and the old one gets no grace period.")
@click.option("--reason", default="scheduled rotation", show_default=True,
              help="Why (node): shown to the administrators who co-sign, and audited.")
@json_option
def rotate_key_cmd(which: str, config_path: Path, ca_dir: Path, key_lost: bool, reason: str,
                   as_json: bool) -> None:
    """Rotate the node's signing key (`node`) or TLS certificate (`tls`) under live traffic.

    `tls`: the running node switches within a second, without a restart.

    `node`: prepares the new key and a key change statement that needs the co-signatures
    of [keys] cosign_threshold other national nodes (`liaison admin keys cosign`); once
    applied (`liaison admin keys apply`) the running node switches within a second and
    peers accept the old key for the grace period ([auth] key_grace_s).
    """
    cfg = config_mod.load(config_path)
    if which == "node" and cfg.admin.four_eyes:
        raise Forbidden(f"[admin] four_eyes is on at node {cfg.id}: propose the rotation with "
                        "`liaison admin propose rotate-key`; a second administrator's "
                        "`liaison admin approve OP --ca ...` carries it out")
    result = rotate(cfg, which, ca_dir, key_lost=key_lost, reason=reason)
    if which == "node":
        from liaison_net.cli import admin_cosign

        admin_cosign.echo_prepared(result, as_json)
        return
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
        click.echo("the running node switches within a second; watch `liaison admin keys list`")


def rotate(cfg: config_mod.NodeConfig, which: str, ca_dir: Path, *, key_lost: bool = False,
           reason: str = "scheduled rotation") -> dict[str, Any]:
    """Rotate the node's TLS certificate on disk (the node picks it up), or prepare a new
    signing key and its key change statement for the co-signatures (`node`)."""
    now = cli_clock().host_now()
    result: dict[str, Any]
    if which == "node":
        # A node key change takes effect only with the other national nodes' co-signatures:
        # this prepares the new key and the statement for them (cli/admin_cosign.py).
        from liaison_net.cli import admin_cosign

        return admin_cosign.prepare_rotation(cfg, ca_dir, key_lost=key_lost, reason=reason)
    if key_lost:
        raise Malformed("--key-lost is for the node signing key")
    from liaison_net.pki import reissue

    cert = reissue.rotate_tls(cfg.cert_dir, cfg.id, ca_dir=ca_dir, now=now)
    result = {"rotated": "tls", "node": cfg.id, "serial": format(cert.serial_number, "x"),
              "not_after": cert.not_valid_after_utc.isoformat()}
    return result


@click.command("revoke", cls=Command)
@click.argument("subject", type=click.Choice(["officer", "node"]))
@click.argument("principal")
@click.option("--reason", required=True, help="Why (recorded, federated and audited).")
@click.option("--key-id", "key_id_hex", default=None,
              help="The signing key to revoke (hex). Default for an officer: their current "
                   "key. Required for a node: one of this node's superseded keys.")
@config_option
@json_option
def revoke_cmd(subject: str, principal: str, reason: str, key_id_hex: str | None,
               config_path: Path, as_json: bool) -> None:
    """Revoke an officer's or this node's old signing key, everywhere, from now on.

    Run it on the home node of the officer (or on the node itself): only that node is the
    authority; any other node's revocation is refused by every peer. A node key revocation
    is a key change: this writes it for the co-signatures of the other national nodes
    (`liaison admin keys cosign`, then `keys apply`), as `rotate-key node` does.

    It asks the running node to do it (over its admin socket, DATA_DIR/admin.sock); when
    the node is not running, it writes the revocation to the node's store itself, and the
    node pushes it to its peers when it starts.
    """
    cfg = config_mod.load(config_path)
    kind = rotation.Subject(subject)
    key_id = parse_key_id(key_id_hex)
    if kind is rotation.Subject.NODE:
        if principal != cfg.id:
            raise Forbidden(f"node {cfg.id} has no authority over the keys of {principal}")
        if key_id is None:
            raise Malformed("--key-id is required to revoke a node key")
        from liaison_net.cli import admin_cosign

        admin_cosign.echo_prepared(admin_cosign.prepare_revocation(cfg, key_id, reason),
                                   as_json)
        return
    body = json.dumps({"subject": subject, "principal": principal, "reason": reason,
                       "key_id": key_id_hex}).encode()

    async def local(desk: AdminDesk) -> dict[str, Any]:
        done = await desk.revoke(kind, principal, reason, key_id)
        return revoke_answer(done.key_id, done.principal, done.effective, done.pushed_to)

    result, by_node = write_via_node(cfg, "/admin/v1/revoke", body, "application/json", local)
    pushed_to = result.get("pushed_to")
    if not isinstance(pushed_to, list) or not isinstance(result.get("key_id"), str):
        raise Malformed("the node's revocation answer has the wrong shape")
    if as_json:
        click.echo(json.dumps({**result, "written_by": "node" if by_node else "cli"},
                              sort_keys=True))
    elif by_node:
        click.echo(f"revoked key {result['key_id']} of {principal}; node {cfg.id} pushes it "
                   f"to {', '.join(map(str, pushed_to)) or 'no peer'} until each answers")
    else:
        click.echo(f"revoked key {result['key_id']} of {principal}; node {cfg.id} is not "
                   f"running: it pushes it to {', '.join(map(str, pushed_to)) or 'no peer'} "
                   "when it starts")


@click.command("revocations", cls=Command)
@config_option
@json_option
def revocations_cmd(config_path: Path, as_json: bool) -> None:
    """Every revocation this node knows: its own and those its peers pushed."""
    cfg = config_mod.load(config_path)
    if not cfg.store.postgresql and not cfg.database.is_file():
        raise NotFound(f"no node database at {cfg.database}")
    rows: list[dict[str, Any]] = [
        {"key_id": r.key_id.hex(), "principal": r.principal, "subject": r.subject,
         "authority": r.authority,
         "effective": datetime.fromtimestamp(r.effective / 1000, UTC).isoformat(),
         "reason": r.reason, "pending_peers": list(r.pending_peers)}
        for r in read_store(cfg, lambda store: store.keys.revocations())]
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    table = tables.table("principal", "key id", "by", "effective", "reason", "not yet at",
                         title=f"revocations known to node {cfg.id}", ids=("key id",))
    for r in rows:
        table.add_row(r["principal"], r["key_id"], r["authority"], r["effective"], r["reason"],
                      ", ".join(r["pending_peers"]))
    tables.console().print(table)


@click.group("pseudonym-key", cls=Group)
def pseudonym_key() -> None:
    """The network pseudonym key (subject pseudonyms of signals): rotate, install, retire.

    A rotation runs in three steps: `rotate` in the CA directory, `install` on every node
    (clients then get evaluations under both keys, and signals carry both pseudonyms), and,
    once the longest signal validity has passed, `retire` and `install` again.
    """


@pseudonym_key.command("rotate")
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The network CA directory (offline), e.g. certs.")
def pseudonym_rotate_cmd(directory: Path) -> None:
    """Make a new network pseudonym key; the current one becomes the previous."""
    from liaison_net.pki import pseudonym_key_files

    old, new = pseudonym_key_files.rotate(directory)
    click.echo(f"new pseudonym key {new.hex()} (previous {old.hex()}); install it on every "
               "node with `liaison admin pseudonym-key install`")


@pseudonym_key.command("retire")
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path))
def pseudonym_retire_cmd(directory: Path) -> None:
    """End a rotation window: drop the previous key (then install on every node)."""
    from liaison_net.pki import pseudonym_key_files

    pseudonym_key_files.retire_previous(directory)
    click.echo("previous pseudonym key removed; install on every node")


@pseudonym_key.command("install")
@config_option
@click.option("--from", "source", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The network CA directory holding the pseudonym key files.")
def pseudonym_install_cmd(config_path: Path, source: Path) -> None:
    """Copy the network pseudonym keys into this node (0600); a running node uses them at
    its next evaluation, no restart."""
    from liaison_net.pki import pseudonym_key_files

    cfg = config_mod.load(config_path)
    ring = pseudonym_key_files.install(source, cfg.cert_dir)
    click.echo(f"node {cfg.id}: pseudonym keys {', '.join(k.hex() for k in ring.key_ids)} "
               "(newest first)")
