"""`liaison officer init`: this officer's keys, passphrase-sealed keystore and enrolment
request, made on their own machine (the private keys never leave it)."""

from __future__ import annotations

from pathlib import Path

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Command
from liaison_net.cli.officer_common import emit_json, keystore_options, read_passphrase
from liaison_net.client import keystore as keystore_mod
from liaison_net.core.almanac import Almanac
from liaison_net.core.ids import check_officer_id
from liaison_net.errors import Conflict
from liaison_net.pki import certificates


@click.command("init", cls=Command)
@click.option("--id", "officer_id", required=True, help="Officer id <node>/<handle>, e.g. "
              "nl/jdevries.")
@click.option("--name", required=True, help="Full name, as colleagues should see it.")
@click.option("--role", required=True, help="Role, e.g. 'liaison officer' or 'duty desk'.")
@click.option("--node-url", required=True, help="The home node's officer API, "
              "https://host:port.")
@click.option("--ca", "ca_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The network CA certificate (certs/ca.crt).")
@click.option("--request-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the enrolment request [default: <node>_<handle>.request].")
@click.option("--language", "languages", multiple=True, metavar="CODE",
              help="A language you work in, ISO 639-1 (e.g. nl, es); repeatable, up to 8.")
@click.option("--posting", default="", metavar="COUNTRY[-CITY]",
              help="Where you are stationed, e.g. co-bogota [default: none, at home].")
@click.option("--cover", "coverage", multiple=True, metavar="COUNTRY/AREA",
              help="A country and crime area you cover for partner countries, e.g. "
                   "co/drugs (docs/almanac.md lists the areas); repeatable, up to 32.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def init_cmd(officer_id: str, name: str, role: str, node_url: str, ca_path: Path,
             request_out: Path | None, languages: tuple[str, ...], posting: str,
             coverage: tuple[str, ...], as_json: bool, keystore_path: Path,
             passphrase_file: Path | None) -> None:
    """Generate this officer's signing and encryption keys into a new keystore.

    The private keys never leave this machine. The enrolment request written next to it
    carries only the public keys, signed to prove possession, and your almanac entry
    (languages, posting, coverage): hand it to your node administrator (`liaison admin
    enrol-officer REQUEST --config ...`) and confirm the key ids shown here with them by
    phone.
    """
    check_officer_id(officer_id)
    almanac = Almanac.create(languages=languages, posting=posting, coverage=coverage)
    keystore_mod.check_node_url(node_url)
    from cryptography.hazmat.primitives import serialization

    ca_pem = certificates.load_ca_certificate(ca_path).public_bytes(serialization.Encoding.PEM)
    if keystore_path.exists():
        raise Conflict(f"a keystore already exists at {keystore_path}")
    passphrase = keystore_mod.check_passphrase(read_passphrase(
        passphrase_file, prompt=f"New passphrase for {keystore_path}", new=True))
    request_out = request_out or Path(f"{officer_id.replace('/', '_')}.request")
    ks, request = keystore_mod.create(keystore_path, officer_id, name, role, node_url, ca_pem,
                                      passphrase, almanac=almanac)
    certificates.write_public(request_out, request)
    result = {"officer": ks.officer, "keystore": str(keystore_path),
              "request": str(request_out), "node_url": ks.node_url,
              "signing_key_id": ks.signing.key_id.hex(),
              "encryption_key_id": ks.encryption.key_id.hex(), **almanac.to_json()}
    if as_json:
        emit_json(result)
        return
    click.echo(f"created keystore for {ks.officer} at {keystore_path} (0600, passphrase "
               "protected)")
    click.echo(f"  signing key id:    {result['signing_key_id']}")
    click.echo(f"  encryption key id: {result['encryption_key_id']}")
    for line in view.almanac_lines(almanac):
        click.echo(f"  {line}")
    click.echo(f"wrote enrolment request {request_out}")
    click.echo(f"next: your administrator runs `liaison admin enrol-officer {request_out} "
               "--config <node config>`")

