"""`liaison admin keys list | rotate-key | revoke | revocations`: keys under live traffic.

Rotation writes new files into the node's certificate directory; the running node picks
them up within a second (see ``key_watch``) and peers accept the old signing key for the
configured grace period (``[auth] key_grace_s``). A revocation is signed here with the
node's key, stored in the node's database and pushed by the running node to every peer
until each has answered; from its effective time on, the key is refused everywhere.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from rich.console import Console
from rich.table import Table

from liaison_net import config as config_mod
from liaison_net.cli.admin_officers import config_option, json_option, node_signing_key
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import crypto, rotation
from liaison_net.core.ids import check_node_id, check_officer_id
from liaison_net.errors import Conflict, Forbidden, Malformed, NotFound
from liaison_net.pki import certificates, pseudonym_key_files, reissue
from liaison_net.store.node_store import NodeStore


def _now_ms() -> int:
    return cli_clock().now_ms()


def _age_days(ms: int | float) -> str:
    return f"{max(0.0, (_now_ms() - ms) / 86_400_000):.1f}d"


@click.group("keys")
def keys() -> None:
    """Inspect the keys this node knows."""


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
    table = Table(title=f"keys known to node {cfg.id}")
    for column in ("kind", "owner", "key id", "age", "state", "grace until / reason"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["kind"], r["owner"], r["key_id"], r["age"], r["state"],
                      str(r.get("grace_until") or r.get("reason") or ""))
    Console().print(table)


def _key_rows(cfg: config_mod.NodeConfig) -> list[dict[str, Any]]:
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
    if not cfg.database.is_file():
        return rows
    with sqlite3.connect(f"file:{cfg.database}?mode=ro", uri=True, timeout=10) as db:
        revoked = {bytes(k): (r, e) for k, r, e in
                   db.execute("SELECT key_id, reason, effective FROM revocations")}

        def state(key_id: bytes, grace_until: int | None) -> dict[str, Any]:
            if key_id in revoked and now >= revoked[key_id][1]:
                return {"state": "revoked", "reason": revoked[key_id][0]}
            if grace_until is None:
                return {"state": "active", "grace_until": None}
            return {"state": "grace" if now < grace_until else "retired",
                    "grace_until": datetime.fromtimestamp(grace_until / 1000, UTC).isoformat()}

        for node, public in db.execute("SELECT node, signing_public FROM node_keys"):
            key_id = crypto.signing_key_id(bytes(public))
            rows.append({"kind": "peer-signing", "owner": node, "key_id": key_id.hex(),
                         "age": "", **state(key_id, None)})
        for officer, key_id, valid_until in db.execute(
                "SELECT officer, signing_key_id, valid_until FROM directory ORDER BY officer"):
            rows.append({"kind": "officer-signing", "owner": officer,
                         "key_id": bytes(key_id).hex(), "age": "",
                         **state(bytes(key_id), None),
                         "valid_until": datetime.fromtimestamp(valid_until / 1000,
                                                               UTC).isoformat()})
        for principal, key_id, grace_until in db.execute(
                "SELECT principal, signing_key_id, grace_until FROM key_history"):
            rows.append({"kind": "superseded", "owner": principal,
                         "key_id": bytes(key_id).hex(), "age": "",
                         **state(bytes(key_id), grace_until)})
    return rows


@click.command("rotate-key")
@click.argument("which", type=click.Choice(["node", "tls"]))
@config_option
@click.option("--ca", "ca_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory holding the network CA (ca.key, ca.crt): the CA certifies the "
                   "new key. Bring it from offline storage for the operation.")
@json_option
def rotate_key_cmd(which: str, config_path: Path, ca_dir: Path, as_json: bool) -> None:
    """Rotate the node's signing key (`node`) or TLS certificate (`tls`) under live traffic.

    The running node switches within a second, without a restart. After `node`, peers
    accept the old signing key for the grace period ([auth] key_grace_s), then only the new.
    """
    cfg = config_mod.load(config_path)
    now = cli_clock().host_now()
    result: dict[str, Any]
    if which == "tls":
        cert = reissue.rotate_tls(cfg.cert_dir, cfg.id, ca_dir=ca_dir, now=now)
        result = {"rotated": "tls", "node": cfg.id, "serial": format(cert.serial_number, "x"),
                  "not_after": cert.not_valid_after_utc.isoformat()}
    else:
        done = reissue.rotate_signing(cfg.cert_dir, cfg.id, ca_dir=ca_dir, now=now)
        old = crypto.signing_key_from_seed(done.old_seed)
        new = crypto.signing_key_from_seed(done.new_seed)
        # The statement signed by the old key: the holder's own word that the new key is its
        # successor, kept beside the keys for the audit trail (the CA certificate is what
        # peers check).
        issued = _now_ms()
        statement = rotation.sign_rotation(rotation.Rotation(
            rotation.Subject.NODE, cfg.id, old.key_id, new.public, None, serial=issued,
            issued=issued, grace_until=issued + cfg.key_grace_s * 1000), old)
        certificates.write_public(cfg.cert_dir / "signing.rotation", statement)
        result = {"rotated": "node", "node": cfg.id, "old_key_id": old.key_id.hex(),
                  "new_key_id": new.key_id.hex(), "grace_s": cfg.key_grace_s}
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
        click.echo("the running node switches within a second; watch `liaison admin keys list`")


@click.command("revoke")
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
    authority; any other node's revocation is refused by every peer.
    """
    cfg = config_mod.load(config_path)
    kind = rotation.Subject(subject)
    if kind is rotation.Subject.OFFICER:
        check_officer_id(principal)
    else:
        check_node_id(principal)
    if rotation.authority_for(kind, principal) != cfg.id:
        raise Forbidden(f"node {cfg.id} has no authority over the keys of {principal}")
    result = asyncio.run(_revoke(cfg, kind, principal, reason, key_id_hex))
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"revoked key {result['key_id']} of {principal}; node {cfg.id} pushes it "
                   f"to {', '.join(result['pushed_to']) or 'no peer'} until each answers")


async def _revoke(cfg: config_mod.NodeConfig, kind: rotation.Subject, principal: str,
                  reason: str, key_id_hex: str | None) -> dict[str, Any]:
    node_key = node_signing_key(cfg)
    store = NodeStore(cfg.database, cfg.id)
    await store.open()
    try:
        if key_id_hex is not None:
            try:
                key_id = bytes.fromhex(key_id_hex)
            except ValueError as exc:
                raise Malformed("--key-id must be hex") from exc
        elif kind is rotation.Subject.OFFICER:
            keys = await store.officer_keys(principal)
            if keys is None:
                raise NotFound(f"{principal} is not in the directory of node {cfg.id}")
            key_id = crypto.signing_key_id(keys[0])
        else:
            raise Malformed("--key-id is required to revoke a node key")
        if kind is rotation.Subject.NODE and key_id == node_key.key_id:
            raise Conflict("that is the node's current key: rotate it first "
                           "(`liaison admin rotate-key node`), then revoke the old one")
        now = _now_ms()
        statement = rotation.Revocation(kind, principal, key_id, reason, serial=now,
                                        effective=now, authority=cfg.id)
        raw = rotation.sign_revocation(statement, node_key)
        peers = [p.id for p in cfg.peers]
        if not await store.keys.add_revocation(statement, raw, now=now, forward_to=peers,
                                               source=cfg.id):
            raise Conflict(f"key {key_id.hex()} is already revoked")
    finally:
        await store.close()
    return {"key_id": key_id.hex(), "principal": principal, "effective": now,
            "pushed_to": peers}


@click.command("revocations")
@config_option
@json_option
def revocations_cmd(config_path: Path, as_json: bool) -> None:
    """Every revocation this node knows: its own and those its peers pushed."""
    cfg = config_mod.load(config_path)
    if not cfg.database.is_file():
        raise NotFound(f"no node database at {cfg.database}")
    with sqlite3.connect(f"file:{cfg.database}?mode=ro", uri=True, timeout=10) as db:
        rows = [{"key_id": bytes(k).hex(), "principal": p, "subject": s, "authority": a,
                 "effective": datetime.fromtimestamp(e / 1000, UTC).isoformat(),
                 "reason": r,
                 "pending_peers": [n for (n,) in db.execute(
                     "SELECT node FROM revocation_outbox WHERE key_id = ?", (k,))]}
                for k, p, s, a, e, r in db.execute(
                    "SELECT key_id, principal, subject, authority, effective, reason "
                    "FROM revocations ORDER BY effective")]
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    table = Table(title=f"revocations known to node {cfg.id}")
    for column in ("principal", "key id", "by", "effective", "reason", "not yet at"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["principal"], r["key_id"], r["authority"], r["effective"], r["reason"],
                      ", ".join(r["pending_peers"]))
    Console().print(table)


@click.group("pseudonym-key")
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
    old, new = pseudonym_key_files.rotate(directory)
    click.echo(f"new pseudonym key {new.hex()} (previous {old.hex()}); install it on every "
               "node with `liaison admin pseudonym-key install`")


@pseudonym_key.command("retire")
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path))
def pseudonym_retire_cmd(directory: Path) -> None:
    """End a rotation window: drop the previous key (then install on every node)."""
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
    cfg = config_mod.load(config_path)
    ring = pseudonym_key_files.install(source, cfg.cert_dir)
    click.echo(f"node {cfg.id}: pseudonym keys {', '.join(k.hex() for k in ring.key_ids)} "
               "(newest first)")


def register(admin: click.Group) -> None:
    for command in (keys, rotate_key_cmd, revoke_cmd, revocations_cmd, pseudonym_key):
        admin.add_command(command)
