"""`liaison admin enrol-officer` and `liaison admin audit verify`: run on the node's machine.

Both open the node's SQLite database directly, which is safe while the node runs: WAL lets
readers and one writer share it, every write takes the write lock (``BEGIN IMMEDIATE``),
and the node re-reads the audit chain head under that lock before each commit, so an
entry appended here is chained correctly by the next one the node writes.

Enrolment turns an officer's request into a card signed with the node's signing key. The
request proves possession of the signing key; the administrator confirms the key ids with
the officer (they are printed on both sides) before the card is believed by anyone, and
the almanac entry (languages, posting, coverage), which the card makes the node's word:
`liaison send --to coverage:co/drugs` reaches whoever a card says covers it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import click

from liaison_net import config as config_mod
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_view import almanac_lines
from liaison_net.core import crypto
from liaison_net.core.identity import (
    MAX_CARD_BYTES,
    OfficerCard,
    issue_card,
    verify_card,
    verify_enrolment_request,
)
from liaison_net.core.limits import DAY_MS
from liaison_net.errors import ConfigError, Conflict, LimitExceeded
from liaison_net.pki import certificates
from liaison_net.store.node_store import NodeStore

config_option = click.option(
    "--config", "config_path", required=True,
    type=click.Path(dir_okay=False, path_type=Path), help="The node's TOML config.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def node_signing_key(cfg: config_mod.NodeConfig) -> crypto.SigningKeyPair:
    """The node's Ed25519 key, checked against its CA-issued signing certificate, so a card
    issued here verifies at every peer (and a misplaced key file is caught now)."""
    seed_path = cfg.cert_dir / certificates.SIGNING_KEY_FILE
    try:
        seed = seed_path.read_bytes()
        cert_pem = (cfg.cert_dir / certificates.SIGNING_CERT_FILE).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the node signing key or certificate in "
                          f"{cfg.cert_dir}: {exc.strerror or exc}") from None
    if len(seed) != crypto.SECRET_SEED_BYTES:
        raise ConfigError(f"{seed_path} is not a 32-byte Ed25519 seed")
    key = crypto.signing_key_from_seed(seed)
    ca = certificates.load_ca_certificate(cfg.cert_dir / certificates.CA_CERT_FILE)
    node_id, public = certificates.verify_node_signing_certificate(
        cert_pem, ca, now=cli_clock().host_now())
    if node_id != cfg.id or public != key.public:
        raise ConfigError(f"{seed_path} does not match the signing certificate of node {cfg.id}")
    return key


async def _enrol(cfg: config_mod.NodeConfig, raw_request: bytes) -> tuple[OfficerCard, bool]:
    request = verify_enrolment_request(raw_request)
    key = node_signing_key(cfg)
    store = NodeStore(cfg.database, cfg.id)
    await store.open()
    try:
        holder = await store.keys.signer(crypto.signing_key_id(request.signing_public), now=None)
        if holder is not None and holder.principal != request.officer:
            raise Conflict(f"this signing key is already enrolled for {holder.principal}")
        now = cli_clock().now_ms()
        version = await store.card_version(request.officer) + 1
        raw_card = issue_card(request, node_id=cfg.id, node_key=key, version=version, now=now,
                              valid_for_ms=cfg.card_validity_days * DAY_MS)
        card = verify_card(raw_card, node_public=key.public, node_id=cfg.id, now=now)
        stored = await store.put_card(card, raw_card, now=now, source=f"admin@{cfg.id}")
        return card, stored
    finally:
        await store.close()


@click.command("enrol-officer")
@click.argument("request_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@json_option
def enrol_officer_cmd(request_file: Path, config_path: Path, as_json: bool) -> None:
    """Issue an officer card from REQUEST_FILE (made by `liaison officer init`).

    The card, signed with this node's key, goes into the node's directory and federates to
    every peer. Confirm the key ids and the almanac entry (languages, posting, coverage)
    printed here with the officer before you rely on it.
    Enrolling the same officer again issues a new card version (new keys replace old).
    """
    cfg = config_mod.load(config_path)
    try:
        with request_file.open("rb") as fh:
            raw = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {request_file}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CARD_BYTES:
        raise LimitExceeded(f"{request_file} is larger than an enrolment request can be")
    card, stored = asyncio.run(_enrol(cfg, raw))
    if not stored:
        raise Conflict(f"a newer card for {card.officer} was stored meanwhile; run again")
    result = {"officer": card.officer, "name": card.name, "role": card.role,
              "version": card.version, "valid_from": card.valid_from,
              "valid_until": card.valid_until, "signing_key_id": card.signing_key_id.hex(),
              "encryption_key_id": card.encryption_key_id.hex(), "node": cfg.id,
              **card.almanac.to_json()}
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    until = datetime.fromtimestamp(card.valid_until / 1000, UTC).strftime("%Y-%m-%d")
    click.echo(f"enrolled {card.officer} ({card.name}, {card.role}) on node {cfg.id}: "
               f"card version {card.version}, valid until {until}")
    click.echo(f"  signing key id:    {result['signing_key_id']}")
    click.echo(f"  encryption key id: {result['encryption_key_id']}")
    for line in almanac_lines(card.almanac):
        click.echo(f"  {line}")
    click.echo("confirm both key ids, and what the card says the officer covers, with the "
               "officer before relying on the card")


@click.group("audit")
def audit() -> None:
    """Check the node's hash-chained audit log."""


async def _verify_audit(cfg: config_mod.NodeConfig) -> tuple[int, int | None]:
    store = NodeStore(cfg.database, cfg.id)
    await store.open()
    try:
        return await store.verify_audit()
    finally:
        await store.close()


@audit.command("verify")
@config_option
@json_option
def audit_verify_cmd(config_path: Path, as_json: bool) -> None:
    """Recompute every entry's hash and link; exit 1 naming the first broken entry."""
    cfg = config_mod.load(config_path)
    if not cfg.database.is_file():
        raise ConfigError(f"no node database at {cfg.database}: has node {cfg.id} run yet?")
    count, broken = asyncio.run(_verify_audit(cfg))
    if as_json:
        click.echo(json.dumps({"entries": count, "ok": broken is None, "broken_at": broken}))
    elif broken is None:
        click.echo(f"audit chain OK: {count} entries")
    else:
        click.echo(f"audit chain BROKEN at entry {broken} (of {count})")
    if broken is not None:
        # SystemExit, not ctx.exit: `main` runs click with standalone_mode=False, where
        # ctx.exit's code would be returned and dropped.
        raise SystemExit(1)


def register(admin: click.Group) -> None:
    admin.add_command(enrol_officer_cmd)
    admin.add_command(audit)
