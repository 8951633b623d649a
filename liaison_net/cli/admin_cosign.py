"""`liaison admin keys pending | cosign | apply`: node key changes the other countries sign.

A node's new signing key (rotation, or replacement when the key is lost) and a node key
revocation take effect at peers only with co-signatures of `[keys] cosign_threshold` other
national nodes (core/key_change.py). The statement travels as a file between the
administrators, as TUF root metadata does: `rotate-key node` or `revoke node` writes it,
each other country's administrator reviews and co-signs it (`keys cosign FILE`), and the
node's administrator applies the co-signed file (`keys apply FILE`). From then on it
travels to every peer over federation with the node's certificate, and each peer checks
the co-signatures itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from liaison_net import config as config_mod
from liaison_net.cli import tables
from liaison_net.cli.admin_officers import config_option, json_option
from liaison_net.cli.admin_store import read_store
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import crypto, key_change
from liaison_net.errors import ConfigError, Forbidden, LiaisonError, Malformed, NotFound
from liaison_net.pki import certificates, key_change_files

if TYPE_CHECKING:
    from liaison_net.store.node_store import NodeStore

yes_option = click.option("--yes", is_flag=True,
                          help="Sign without asking (you reviewed the statement already).")


def _read_statement(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NotFound(f"cannot read key change {path}: {exc.strerror}") from exc
    if len(raw) > key_change.MAX_STATEMENT_BYTES:
        raise Malformed(f"{path} is larger than a key change may be")
    return raw


def _node_view(cfg: config_mod.NodeConfig) -> tuple[dict[str, bytes], dict[str, int]]:
    """This node's view from its store (read-only): the current key of each node it
    knows, and the last key change serial it accepted for each."""
    if not cfg.database.is_file():
        return {}, {}

    async def read(store: NodeStore) -> tuple[dict[str, bytes], dict[str, int]]:
        keys = await store.node_keys()
        return keys, {n: await store.keys.key_change_serial(n) for n in keys}

    return read_store(cfg, read)


def _own_public(cfg: config_mod.NodeConfig) -> bytes:
    """The node's current signing key, from its certificate (its seed may be lost)."""
    paths = certificates.NodePaths.under(cfg.cert_dir, cfg.id)
    public = x509.load_pem_x509_certificate(paths.signing_cert.read_bytes()).public_key()
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{paths.signing_cert} does not hold an Ed25519 key")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _own_key(cfg: config_mod.NodeConfig) -> crypto.SigningKeyPair:
    paths = certificates.NodePaths.under(cfg.cert_dir, cfg.id)
    return crypto.signing_key_from_seed(paths.signing_key.read_bytes())


def _cosigner_keys(cfg: config_mod.NodeConfig, subject: str,
                   known: dict[str, bytes]) -> dict[str, bytes]:
    """Who may co-sign a change of ``subject``, as this node sees it: itself and its
    configured peers, with the keys it holds, never the subject."""
    members = {p.id for p in cfg.peers} | {cfg.id}
    keys = {n: k for n, k in known.items() if n in members}
    keys[cfg.id] = _own_public(cfg)
    return {n: k for n, k in keys.items() if n != subject}


def _unrevoked(cfg: config_mod.NodeConfig, cosigners: dict[str, bytes]) -> dict[str, bytes]:
    """Leave out co-signers whose key this node holds as revoked, as its peers do."""
    if not cfg.database.is_file():
        return cosigners
    now = cli_clock().now_ms()
    from liaison_net.services.key_changes import unrevoked_cosigners  # structlog

    async def read(store: NodeStore) -> dict[str, bytes]:
        return await unrevoked_cosigners(store.keys, cosigners, now=now)

    return read_store(cfg, read)


def describe(statement: key_change.Statement) -> dict[str, Any]:
    c = statement.change
    return {"node": c.node, "kind": c.kind.value, "serial": c.serial,
            "old_key_id": c.old_key_id.hex(),
            "new_key_id": c.new_key_id.hex() if c.new_key_id is not None else None,
            "issued": datetime.fromtimestamp(c.issued / 1000, UTC).isoformat(),
            "reason": c.reason, "signed_by_node": statement.signature is not None,
            "cosigned_by": sorted({n for n, _ in statement.cosignatures})}


def _show(info: dict[str, Any], counted: tuple[str, ...], needed: int) -> None:
    old = "old key" if info["kind"] != "revoke" else "key revoked"
    click.echo(f"key change {info['serial']} of node {info['node']}: {info['kind']}")
    click.echo(f"  {old}:  {info['old_key_id']}")
    if info["new_key_id"]:
        click.echo(f"  new key:  {info['new_key_id']}")
    click.echo(f"  reason:   {info['reason']}")
    click.echo(f"  issued:   {info['issued']}")
    click.echo(f"  signed by the node: {'yes' if info['signed_by_node'] else 'no (key lost)'}")
    click.echo(f"  co-signed by: {', '.join(counted) or 'nobody yet'} "
               f"({len(counted)} of {needed} needed)")


def prepare(cfg: config_mod.NodeConfig, change: key_change.KeyChange,
            signer: crypto.SigningKeyPair | None) -> dict[str, Any]:
    """Write the statement for co-signing (``pending.keychange``) and say what comes next."""
    raw = key_change.propose(change, signer)
    path = (cfg.cert_dir / key_change_files.PENDING_FILE).resolve()
    certificates.write_public(path, raw)
    others = sorted(p.id for p in cfg.peers)
    return {"node": cfg.id, "kind": change.kind.value, "serial": change.serial,
            "old_key_id": change.old_key_id.hex(),
            "new_key_id": change.new_key_id.hex() if change.new_key_id else None,
            "statement": str(path), "cosigners_needed": cfg.cosign_threshold,
            "cosigners": others}


def prepare_rotation(cfg: config_mod.NodeConfig, ca_dir: Path, *, key_lost: bool,
                     reason: str) -> dict[str, Any]:
    """A new CA-certified key waits beside the current one until the change is applied."""
    old_public = _own_public(cfg)
    nxt = key_change_files.prepare_next_key(cfg.cert_dir, cfg.id, ca_dir=ca_dir,
                                            now=cli_clock().host_now())
    new = crypto.signing_key_from_seed(nxt.seed)
    change = key_change.KeyChange(
        key_change.Kind.REPLACE if key_lost else key_change.Kind.ROTATE, cfg.id,
        crypto.signing_key_id(old_public), new.public,
        key_change_files.last_serial(cfg.cert_dir) + 1, cli_clock().now_ms(), reason)
    return prepare(cfg, change, None if key_lost else _own_key(cfg))


def prepare_revocation(cfg: config_mod.NodeConfig, key_id: bytes,
                       reason: str) -> dict[str, Any]:
    change = key_change.KeyChange(key_change.Kind.REVOKE, cfg.id, key_id, None,
                                  key_change_files.last_serial(cfg.cert_dir) + 1,
                                  cli_clock().now_ms(), reason)
    return prepare(cfg, change, _own_key(cfg))


def echo_prepared(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    click.echo(f"key change {result['serial']} of node {result['node']} ({result['kind']}) "
               f"written to {result['statement']}")
    click.echo(f"it takes effect only with the co-signatures of {result['cosigners_needed']} "
               f"of: {', '.join(result['cosigners'])}. Pass the file to their administrators "
               "(`liaison admin keys cosign FILE --config THEIR.toml`), then apply the "
               "co-signed file here (`liaison admin keys apply FILE --config ...`).")


@click.command("cosign", cls=Command)
@click.argument("statement_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the co-signed statement here (default: back into STATEMENT_FILE).")
@yes_option
@json_option
def cosign_cmd(statement_file: Path, config_path: Path, out: Path | None, yes: bool,
               as_json: bool) -> None:
    """Review another national node's key change and co-sign it with this node's key.

    Shows the node, the old and new key ids, the serial and the reason; checks the node's
    own signature against the key this node holds for it and that the serial is the next
    one. Confirm the key ids with the other node's administrator by a second channel (a
    phone call) before you sign.
    """
    cfg = config_mod.load(config_path)
    raw = _read_statement(statement_file)
    statement = key_change.decode(raw)
    subject = statement.node
    if subject == cfg.id:
        raise Forbidden(f"node {cfg.id} cannot co-sign a change of its own key")
    if cfg.peer(subject) is None:
        raise Forbidden(f"{subject} is not a national node peer of {cfg.id}")
    known, serials = _node_view(cfg)
    cosigners = _cosigner_keys(cfg, subject, known)
    verified = key_change.verify(raw, subject_key=known.get(subject), cosigner_keys=cosigners,
                                 threshold=0, last_serial=serials.get(subject, None),
                                 expected_node=subject)
    info = describe(verified.statement)
    if not as_json:
        _show(info, verified.counted, cfg.cosign_threshold)
    if not yes and not click.confirm(f"co-sign this change as node {cfg.id}?", default=False,
                                     err=True):
        raise click.Abort()
    signed = key_change.cosign(raw, cfg.id, _own_key(cfg))
    target = out or statement_file
    certificates.write_public(target, signed)
    counted = key_change.count_cosigners(subject, statement.body,
                                         key_change.decode(signed).cosignatures, cosigners)
    result = {**info, "cosigned_by": list(counted), "written": str(target)}
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"co-signed as {cfg.id}: {target} now carries {len(counted)} "
                   "co-signature(s) this node can check")


@click.command("apply", cls=Command)
@click.argument("statement_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@json_option
def apply_cmd(statement_file: Path, config_path: Path, as_json: bool) -> None:
    """Apply this node's co-signed key change: install the new key (the running node
    switches within a second) or record the revocation; it then travels to every peer.

    Refused unless it carries [keys] cosign_threshold co-signatures of the other national
    nodes that this node can check, and is the next change of this node.
    """
    cfg = config_mod.load(config_path)
    raw = _read_statement(statement_file)
    known, _ = _node_view(cfg)
    verified = key_change.verify(
        raw, subject_key=_own_public(cfg),
        cosigner_keys=_unrevoked(cfg, _cosigner_keys(cfg, cfg.id, known)),
        threshold=cfg.cosign_threshold, last_serial=key_change_files.last_serial(cfg.cert_dir),
        expected_node=cfg.id)
    change = verified.change
    if change.kind is not key_change.Kind.REVOKE:
        nxt = key_change_files.next_key(cfg.cert_dir)
        if nxt is None or crypto.signing_key_from_seed(nxt.seed).public != \
                change.new_signing_public:
            raise NotFound(f"the new key of this change does not wait in {cfg.cert_dir} "
                           f"({key_change_files.NEXT_KEY_FILE}): apply it where "
                           "`rotate-key node` prepared it")
    path = key_change_files.record(cfg.cert_dir, change.serial, raw)
    if change.kind is not key_change.Kind.REVOKE:
        key_change_files.install_next_key(cfg.cert_dir, cfg.id)
    (cfg.cert_dir / key_change_files.PENDING_FILE).unlink(missing_ok=True)
    result = {**describe(verified.statement), "cosigned_by": list(verified.counted),
              "recorded": str(path)}
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"applied key change {change.serial} ({change.kind.value}), co-signed by "
                   f"{', '.join(verified.counted)}; the running node takes it within a "
                   "second and pushes it to every peer")


@click.command("pending", cls=Command)
@config_option
@json_option
def pending_cmd(config_path: Path, as_json: bool) -> None:
    """Key changes waiting for co-signatures: this node's own (prepared, not applied) and
    those peers presented that this node refused (without the threshold, out of order)."""
    cfg = config_mod.load(config_path)
    rows: list[dict[str, Any]] = []
    known, serials = _node_view(cfg)
    own = cfg.cert_dir / key_change_files.PENDING_FILE
    if own.is_file():
        try:
            statement = key_change.decode(own.read_bytes())
            if statement.change.serial > key_change_files.last_serial(cfg.cert_dir):
                counted = key_change.count_cosigners(
                    cfg.id, statement.body, statement.cosignatures,
                    _cosigner_keys(cfg, cfg.id, known))
                rows.append({**describe(statement), "where": "here", "file": str(own),
                             "cosigned_by": list(counted), "needed": cfg.cosign_threshold,
                             "refused": None})
        except LiaisonError as exc:
            rows.append({"where": "here", "file": str(own), "refused": exc.code,
                         "node": cfg.id, "kind": None, "serial": None})
    if cfg.database.is_file():
        for node, raw, code, reason, _ in read_store(
                cfg, lambda store: store.keys.refused_key_changes()):
            try:
                statement = key_change.decode(raw)
            except LiaisonError:
                continue
            if statement.change.serial <= serials.get(node, 0):
                continue
            counted = key_change.count_cosigners(node, statement.body, statement.cosignatures,
                                                 _cosigner_keys(cfg, node, known))
            rows.append({**describe(statement), "where": "peer", "file": None,
                         "cosigned_by": list(counted), "needed": cfg.cosign_threshold,
                         "refused": f"{code}: {reason}"})
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    table = tables.table("node", "where", "kind", "serial", "old key", "new key", "reason",
                         "co-signed by", "refused", title=f"key changes pending at {cfg.id}",
                         ids=("old key", "new key"))
    for r in rows:
        table.add_row(str(r["node"]), r["where"], str(r["kind"]), str(r["serial"]),
                      str(r.get("old_key_id") or ""), str(r.get("new_key_id") or ""),
                      str(r.get("reason") or ""),
                      f"{', '.join(r.get('cosigned_by') or []) or '-'} "
                      f"({len(r.get('cosigned_by') or [])}/{r.get('needed', '?')})",
                      str(r["refused"] or ""))
    tables.console().print(table)
