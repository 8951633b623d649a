"""`liaison admin audit verify | prove | check-proof`: the audit log checked against what the
other national nodes witnessed (``core/checkpoint.py``, ``services/checkpoints.py``).

``verify`` recomputes the hash chain, then the Merkle root of the log at each checkpoint
its peers cosigned (each cosignature verified under the peer's CA-certified key), so a
rewrite that recomputed the chain, or a log cut short, shows as a root the witnesses never
signed, and the first entry that differs is named. ``prove`` writes an inclusion proof of
an envelope's entries against a witnessed checkpoint; ``check-proof`` checks one at a
partner, against the checkpoint *it* witnessed, from its own store. All read the store
read-only, beside the running node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from liaison_net import config as config_mod
from liaison_net.cli.admin_store import read_store
from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.core import checkpoint as cp
from liaison_net.core import codec, merkle
from liaison_net.core.audit import AuditEntry, entry_hash, first_broken
from liaison_net.core.ids import id_from_text, id_to_text
from liaison_net.core.kept_leaves import KeptLeaves
from liaison_net.errors import ConfigError, LiaisonError, LimitExceeded, Malformed, NotFound

if TYPE_CHECKING:
    from liaison_net.store.node_store import NodeStore

PROOF_FORMAT = "liaison-net/audit-inclusion-proof/v1"
MAX_PROOF_FILE_BYTES = 4 * 1024 * 1024
MAX_PROOF_ENTRIES = 1000

config_option = click.option(
    "--config", "config_path", required=True,
    type=click.Path(dir_okay=False, path_type=Path), help="The node's TOML config.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _load(config_path: Path) -> config_mod.NodeConfig:
    cfg = config_mod.load(config_path)
    if not cfg.store.postgresql and not cfg.database.is_file():
        raise ConfigError(f"no node database at {cfg.database}: has node {cfg.id} run yet?")
    return cfg


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def witness_keys(store: NodeStore, cfg: config_mod.NodeConfig) -> dict[str, list[bytes]]:
    """Each peer's signing keys, believed only as a CA-signed certificate says: its current
    one, and those a rotation replaced (their certificates are kept with them). Whoever can
    write the database cannot slip in a key of their own to forge a cosignature."""
    from liaison_net.pki import certificates  # cryptography, when a log is checked

    ca = certificates.load_ca_certificate(cfg.cert_dir / certificates.CA_CERT_FILE)
    keys: dict[str, list[bytes]] = {}
    for node, cert_pem in await store.checkpoints.witness_certificates():
        try:
            node_id, public = certificates.verify_node_signing_certificate(
                cert_pem, ca, now=cli_clock().host_now())
        except LiaisonError:
            continue
        if node_id == node and node != cfg.id and public not in keys.get(node, []):
            keys.setdefault(node, []).append(public)
    return keys


# --- verify ----------------------------------------------------------------------------------


@dataclass
class Witnessed:
    signed: cp.SignedCheckpoint
    witnesses: list[str]


@dataclass
class Report:
    entries: int
    broken_at: int | None
    witnessed: list[Witnessed] = field(default_factory=list)
    difference: cp.Difference | None = None
    difference_witnesses: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.difference is None

    def to_json(self) -> dict[str, Any]:
        latest = self.witnessed[-1] if self.witnessed else None
        diff = self.difference
        return {
            "ok": self.ok, "entries": self.entries, "broken_at": self.broken_at,
            "witnessed_checkpoints": len(self.witnessed),
            "latest_witnessed": None if latest is None else {
                "size": latest.signed.checkpoint.size,
                "root": latest.signed.checkpoint.root.hex(),
                "at": _iso(latest.signed.checkpoint.at), "witnesses": latest.witnesses},
            "differs": None if diff is None else {
                "first_entry": diff.first_index + 1, "exact": diff.exact,
                "truncated": diff.truncated, "checkpoint_size": diff.checkpoint.size,
                # Entries (1-based, inclusive) that the kept subtree roots, under the signed
                # root, show hold the first change (core/kept_leaves.py).
                "kept_range": None if diff.kept_range is None else [
                    diff.kept_range[0] + 1, diff.kept_range[1]],
                # True: the exact first_entry is the word of the 2-byte mark kept of it,
                # which no signature covers; only kept_range is under the witnessed root.
                "named_by_mark": diff.named_by_mark,
                "checkpoint_at": _iso(diff.checkpoint.at),
                "witnesses": self.difference_witnesses},
            "warnings": self.warnings,
        }


async def verify_log(store: NodeStore, cfg: config_mod.NodeConfig) -> Report:
    entries = await store.audit_entries()
    report = Report(len(entries), first_broken(entries))
    keys = await witness_keys(store, cfg)
    for row in reversed(await store.checkpoints.of(cfg.id)):
        try:
            signed, witnesses = cp.witnessed_by(row.signed, row.cosignatures, keys)
        except LiaisonError:
            report.warnings.append(f"checkpoint row of size {row.size} is not a checkpoint")
            continue
        if signed.checkpoint.node != cfg.id or signed.checkpoint.size != row.size:
            report.warnings.append(f"checkpoint row of size {row.size} names another log")
            continue
        if witnesses:
            report.witnessed.append(Witnessed(signed, witnesses))
    if not report.witnessed:
        report.warnings.append("no checkpoint of this log is witnessed by a peer: it is "
                               "checked only against itself")
        return report
    local = cp.leaves(entries)
    tree = merkle.MerkleLog(local)

    def holds(i: int) -> bool:
        c = report.witnessed[i].signed.checkpoint
        return len(local) >= c.size and tree.root(c.size) == c.root

    # A log that matches a checkpoint matches every earlier one (each leaf is a chain hash,
    # covering all before it): find the first checkpoint it breaks by bisection.
    lo, hi = 0, len(report.witnessed)
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            lo = mid + 1
        else:
            hi = mid
    if lo < len(report.witnessed):
        # What the node kept of its leaves beside its checkpoints, in order: if it hashes
        # to the signed root it is the original log's, and names the entry that changed.
        original = KeptLeaves.up_to(
            [(row.size, row.leaves, row.kept) for row in await store.checkpoints.of(cfg.id)],
            report.witnessed[lo].signed.checkpoint.size)
        broken = report.witnessed[lo]
        known_good = report.witnessed[lo - 1].signed.checkpoint.size if lo else 0
        report.difference = cp.first_difference(local, broken.signed.checkpoint,
                                                known_good=known_good, original=original)
        report.difference_witnesses = broken.witnesses
    latest = report.witnessed[-1].signed.checkpoint
    if latest.size < len(entries) and report.difference is None:
        report.warnings.append(f"entries {latest.size + 1} to {len(entries)} are not yet "
                               "covered by a witnessed checkpoint")
    return report


@click.command("verify", cls=Command)
@config_option
@json_option
def audit_verify_cmd(config_path: Path, as_json: bool) -> None:
    """Recompute every entry's hash and link, and check the log against the checkpoints
    its peers witnessed; exit 1 naming the first entry broken, changed or missing."""
    cfg = _load(config_path)
    report = read_store(cfg, lambda store: verify_log(store, cfg))
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        _print_report(report)
    if not report.ok:
        # SystemExit, not ctx.exit: `main` runs click with standalone_mode=False, where
        # ctx.exit's code would be returned and dropped.
        raise SystemExit(1)


def _print_report(report: Report) -> None:
    if report.broken_at is None:
        click.echo(f"audit chain OK: {report.entries} entries")
    else:
        click.echo(f"audit chain BROKEN at entry {report.broken_at} (of {report.entries})")
    diff = report.difference
    if report.witnessed and diff is None:
        latest = report.witnessed[-1]
        click.echo(f"consistent with {len(report.witnessed)} witnessed checkpoint(s); latest: "
                   f"{latest.signed.checkpoint.size} entries at "
                   f"{_iso(latest.signed.checkpoint.at)}, witnessed by "
                   f"{', '.join(latest.witnesses)}")
    if diff is not None:
        what = "missing" if diff.truncated and diff.first_index >= report.entries else "differs"
        last = diff.kept_range[1] if diff.kept_range else diff.checkpoint.size
        where = (f"entry {diff.first_index + 1} {what}" if diff.exact else
                 f"the first entry that differs is between {diff.first_index + 1} and "
                 f"{last}")
        if diff.named_by_mark and diff.kept_range:
            where += (f" (the witnessed root places the change in entries "
                      f"{diff.kept_range[0] + 1} to {last}; the entry is named by the mark "
                      f"kept of it)")
        click.echo(f"audit log REWRITTEN: it does not match the checkpoint of "
                   f"{diff.checkpoint.size} entries witnessed by "
                   f"{', '.join(report.difference_witnesses)} at {_iso(diff.checkpoint.at)}; "
                   f"{where}" + (f" (the log now has {report.entries})" if diff.truncated
                                 else ""))
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


# --- prove -----------------------------------------------------------------------------------


async def make_proof(store: NodeStore, cfg: config_mod.NodeConfig, envelope_id: bytes,
                     witness: str | None) -> dict[str, Any]:
    entries = await store.audit_entries()
    keys = await witness_keys(store, cfg)
    chosen: tuple[cp.SignedCheckpoint, list[str]] | None = None
    for row in await store.checkpoints.of(cfg.id):  # newest first
        try:
            signed, witnesses = cp.witnessed_by(row.signed, row.cosignatures, keys)
        except LiaisonError:
            continue
        if witnesses and (witness is None or witness in witnesses):
            chosen = signed, witnesses
            break
    if chosen is None:
        raise NotFound("no checkpoint of this log is witnessed" +
                       (f" by {witness}" if witness else ""))
    signed, witnesses = chosen
    size = signed.checkpoint.size
    if len(entries) < size:
        raise NotFound("the log is shorter than its witnessed checkpoint: run "
                       "`liaison admin audit verify`")
    tree = merkle.MerkleLog(cp.leaves(entries[:size]))
    if tree.root() != signed.checkpoint.root:
        raise NotFound("the log does not match its witnessed checkpoint: run "
                       "`liaison admin audit verify`")
    proved = [
        {"index": i, "seq": e.seq, "at": e.at, "event": e.event,
         "envelope_id": id_to_text(envelope_id), "actor": e.actor, "detail": e.detail,
         "prev": e.prev.hex(), "hash": e.hash.hex(),
         "proof": [h.hex() for h in tree.inclusion_proof(i, size)]}
        for i, e in enumerate(entries[:size]) if e.envelope_id == envelope_id]
    if not proved:
        raise NotFound(f"no audit entry of envelope {id_to_text(envelope_id)} among the "
                       f"{size} entries of the latest witnessed checkpoint (a newer entry is "
                       "provable once the next checkpoint is witnessed)")
    return {"format": PROOF_FORMAT, "node": cfg.id, "envelope": id_to_text(envelope_id),
            "checkpoint": signed.raw.hex(), "size": size, "root": signed.checkpoint.root.hex(),
            "witnesses": witnesses, "entries": proved[:MAX_PROOF_ENTRIES]}


@click.command("prove", cls=Command)
@click.argument("envelope_id")
@config_option
@click.option("--witness", default=None,
              help="Prove against the latest checkpoint this peer witnessed (the partner "
                   "who will check the proof); default: the latest witnessed by any.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the proof to this file (for `audit check-proof`).")
@json_option
def audit_prove_cmd(envelope_id: str, config_path: Path, witness: str | None,
                    out_path: Path | None, as_json: bool) -> None:
    """An inclusion proof of ENVELOPE_ID's audit entries against a checkpoint the peers
    witnessed, for a partner to check with `liaison admin audit check-proof`."""
    cfg = _load(config_path)
    eid = id_from_text(envelope_id)
    proof = read_store(cfg, lambda store: make_proof(store, cfg, eid, witness))
    text = json.dumps(proof, indent=None if as_json else 2)
    if out_path is not None:
        out_path.write_text(text + "\n")
    if as_json or out_path is None:
        click.echo(text)
    else:
        click.echo(f"{len(proof['entries'])} entries of {proof['envelope']} proved against "
                   f"the checkpoint of {proof['size']} entries witnessed by "
                   f"{', '.join(proof['witnesses'])}; written to {out_path}")


# --- check-proof -----------------------------------------------------------------------------


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or (size is not None and len(raw) != size):
        raise Malformed(f"{what} must be {'' if size is None else f'{size} bytes of '}hex")
    return raw


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Malformed(f"{what} must be a non-negative integer")
    return value


def _entry(item: Any) -> tuple[AuditEntry, int, list[bytes]]:
    if not isinstance(item, dict):
        raise Malformed("each proved entry must be an object")
    fields = codec.exact_map("proved entry", item, {
        "index", "seq", "at", "event", "envelope_id", "actor", "detail", "prev", "hash",
        "proof"})
    for name in ("event", "actor", "detail"):
        if not isinstance(fields[name], str) or len(fields[name]) > 10_000:
            raise Malformed(f"entry {name} must be a short text")
    proof = fields["proof"]
    if not isinstance(proof, list) or len(proof) > cp.MAX_PROOF_HASHES:
        raise Malformed("entry proof must be a short list of hashes")
    entry = AuditEntry(_int(fields["seq"], "seq"), _int(fields["at"], "at"), fields["event"],
                       id_from_text(fields["envelope_id"]), fields["actor"], fields["detail"],
                       _hex(fields["prev"], "prev", 32), _hex(fields["hash"], "hash", 32))
    return entry, _int(fields["index"], "index"), [_hex(h, "proof hash", 32) for h in proof]


async def check_proof(store: NodeStore, cfg: config_mod.NodeConfig,
                      proof: dict[str, Any]) -> dict[str, Any]:
    """Check a proof against the checkpoint this node witnessed itself: the root it
    cosigned is the only one believed; the file's checkpoint is only a pointer to it."""
    fields = codec.exact_map("proof", proof, {"format", "node", "envelope", "checkpoint",
                                              "size", "root", "witnesses", "entries"})
    if fields["format"] != PROOF_FORMAT:
        raise Malformed(f"not an audit inclusion proof ({PROOF_FORMAT})")
    node, size = fields["node"], _int(fields["size"], "size")
    envelope = id_from_text(fields["envelope"])
    if not isinstance(node, str) or node == cfg.id:
        raise Malformed("the proof must be of another node's log")
    held = await store.checkpoints.of(node, size=size)
    if not held or cfg.id not in held[0].cosignatures:
        raise NotFound(f"this node ({cfg.id}) did not witness a checkpoint of {size} entries "
                       f"of {node}'s log: ask for a proof with --witness {cfg.id}")
    root = held[0].root
    claimed = cp.decode_unvouched(_hex(fields["checkpoint"], "checkpoint"))
    if claimed.checkpoint.root != root or claimed.checkpoint.size != size:
        raise Malformed("the proof's checkpoint is not the one this node witnessed")
    items = fields["entries"]
    if not isinstance(items, list) or not 0 < len(items) <= MAX_PROOF_ENTRIES:
        raise Malformed(f"a proof holds 1 to {MAX_PROOF_ENTRIES} entries")
    checked = []
    for item in items:
        entry, index, path = _entry(item)
        if entry.envelope_id != envelope:
            raise Malformed(f"entry {entry.seq} is not of envelope {fields['envelope']}")
        if entry.hash != entry_hash(entry.prev, entry.seq, entry.at, entry.event,
                                    entry.envelope_id, entry.actor, entry.detail):
            raise Malformed(f"entry {entry.seq}: its fields do not hash to its hash")
        if not merkle.verify_inclusion(cp.leaf(entry), index, size, path, root):
            raise Malformed(f"entry {entry.seq}: not in the log this node witnessed")
        checked.append({"seq": entry.seq, "at": _iso(entry.at), "event": entry.event,
                        "actor": entry.actor, "detail": json.loads(entry.detail)})
    return {"ok": True, "node": node, "envelope": fields["envelope"], "size": size,
            "witnessed_by": cfg.id, "entries": checked}


@click.command("check-proof", cls=Command)
@click.argument("proof_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@json_option
def audit_check_proof_cmd(proof_file: Path, config_path: Path, as_json: bool) -> None:
    """Check PROOF_FILE (from `audit prove` at another node) against the checkpoint of that
    node's log that this node witnessed; exit 1 if it does not hold."""
    cfg = _load(config_path)
    try:
        raw = proof_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {proof_file}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PROOF_FILE_BYTES:
        raise LimitExceeded(f"a proof file is at most {MAX_PROOF_FILE_BYTES} bytes")
    try:
        proof = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed(f"{proof_file} is not JSON") from None
    try:
        result = read_store(cfg, lambda store: check_proof(store, cfg, proof))
    except (Malformed, NotFound) as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "code": exc.code, "reason": exc.detail}))
        else:
            click.echo(f"proof REFUSED: {exc.detail}")
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"proof OK: {len(result['entries'])} entries of {result['envelope']} are in "
                   f"{result['node']}'s log of {result['size']} entries, as witnessed here")
        for e in result["entries"]:
            click.echo(f"  {e['seq']}  {e['at']}  {e['event']}  {e['actor']}")
