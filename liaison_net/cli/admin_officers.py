"""`liaison admin enrol-officer` and the `audit` group: run on the node's machine.

Enrolment is asked of the running node over its admin socket (or, when it is not running,
done on its store by this command: ``cli.admin_store``); the audit commands
(``cli.admin_audit``) read the store read-only, beside the running node.

Enrolment turns an officer's request into a card signed with the node's signing key. The
request proves possession of the signing key; the administrator confirms the key ids with
the officer (they are printed on both sides) before the card is believed by anyone, and
the almanac entry (languages, posting, coverage), which the card makes the node's word:
`liaison send --to coverage:co/drugs` reaches whoever a card says covers it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from liaison_net import config as config_mod
from liaison_net.admin_api.wire import OCTETS
from liaison_net.cli.admin_store import write_via_node
from liaison_net.cli.commands import Command, LazyGroup, LazyTable
from liaison_net.core.identity import MAX_CARD_BYTES, decode_stored_card
from liaison_net.errors import ConfigError, LimitExceeded, Malformed

if TYPE_CHECKING:
    from liaison_net.services.admin_desk import AdminDesk

config_option = click.option(
    "--config", "config_path", required=True,
    type=click.Path(dir_okay=False, path_type=Path), help="The node's TOML config.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.command("enrol-officer", cls=Command)
@click.argument("request_file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@json_option
def enrol_officer_cmd(request_file: Path, config_path: Path, as_json: bool) -> None:
    """Issue an officer card from REQUEST_FILE (made by `liaison officer init`).

    The card, signed with this node's key, goes into the node's directory and federates to
    every peer. Confirm the key ids and the almanac entry (languages, posting, coverage)
    printed here with the officer before you rely on it.
    Enrolling the same officer again issues a new card version (new keys replace old).

    It asks the running node to do it (over its admin socket, DATA_DIR/admin.sock); when
    the node is not running, it writes the card to the node's store itself, and the node
    federates it when it starts.
    """
    cfg = config_mod.load(config_path)
    try:
        with request_file.open("rb") as fh:
            raw = fh.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {request_file}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CARD_BYTES:
        raise LimitExceeded(f"{request_file} is larger than an enrolment request can be")

    async def local(desk: AdminDesk) -> dict[str, Any]:
        _card, raw_card = await desk.enrol(raw)
        return {"card": base64.b64encode(raw_card).decode()}

    answer, by_node = write_via_node(cfg, "/admin/v1/enrol", raw, OCTETS, local)
    try:
        card = decode_stored_card(base64.b64decode(answer["card"], validate=True))
    except (KeyError, TypeError, ValueError) as exc:
        raise Malformed("the node's enrolment answer holds no card") from exc
    result = {"officer": card.officer, "name": card.name, "role": card.role,
              "version": card.version, "valid_from": card.valid_from,
              "valid_until": card.valid_until, "signing_key_id": card.signing_key_id.hex(),
              "encryption_key_id": card.encryption_key_id.hex(), "node": cfg.id,
              **card.almanac.to_json(), "written_by": "node" if by_node else "cli"}
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    until = datetime.fromtimestamp(card.valid_until / 1000, UTC).strftime("%Y-%m-%d")
    click.echo(f"enrolled {card.officer} ({card.name}, {card.role}) on node {cfg.id}: "
               f"card version {card.version}, valid until {until}")
    click.echo(f"  signing key id:    {result['signing_key_id']}")
    click.echo(f"  encryption key id: {result['encryption_key_id']}")
    from liaison_net.cli.officer_view import almanac_lines  # rich and the officer's client

    for line in almanac_lines(card.almanac):
        click.echo(f"  {line}")
    click.echo("confirm both key ids, and what the card says the officer covers, with the "
               "officer before relying on the card")
    if not by_node:
        click.echo(f"node {cfg.id} is not running: the card is in its store, and federates "
                   "when the node starts")


#: `liaison admin audit` sub-command -> ("module:attribute", its one-line help).
_AUDIT_COMMANDS: LazyTable = {
    "check-proof": ("liaison_net.cli.admin_audit:audit_check_proof_cmd",
                    "Check PROOF_FILE (from `audit prove` at another node) against the "
                    "checkpoint of that node's log that this node witnessed; exit 1 if it "
                    "does not hold."),
    "export": ("liaison_net.cli.admin_audit_export:export_cmd",
               "Export audit entries of a time range for the data protection officer (LED "
               "Art. 25)."),
    "prove": ("liaison_net.cli.admin_audit:audit_prove_cmd",
              "An inclusion proof of ENVELOPE_ID's audit entries against a checkpoint the "
              "peers witnessed, for a partner to check with `liaison admin audit "
              "check-proof`."),
    "verify": ("liaison_net.cli.admin_audit:audit_verify_cmd",
               "Recompute every entry's hash and link, and check the log against the "
               "checkpoints its peers witnessed; exit 1 naming the first entry broken, "
               "changed or missing."),
}


@click.group("audit", cls=LazyGroup, lazy=_AUDIT_COMMANDS)
def audit() -> None:
    """Check the node's audit log: its hash chain, and the checkpoints its peers witnessed."""
