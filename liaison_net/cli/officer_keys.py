"""`liaison officer rotate`: replace this officer's keys without losing anything; and
`liaison officer export-public`: the enrolment request again, for the current keys.

Order matters: the new keystore is written next to the old one *before* the node is asked,
and moved into place only after the node has issued the new card. A crash in between
leaves both files; the next run says so instead of guessing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    keystore_options,
    load_keystore,
    local_cache,
    node_session,
    now_ms,
    read_passphrase,
    run,
)
from liaison_net.client import keystore as keystore_mod
from liaison_net.client.local_cache import LocalCache
from liaison_net.core.identity import renewal, sign_enrolment_request
from liaison_net.errors import Conflict, NotFound
from liaison_net.pki import certificates

GRACE_HINT_MS = 24 * 3600 * 1000


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".rotating")


@click.command("rotate", cls=Command)
@keystore_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def rotate_cmd(keystore_path: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Rotate your signing and encryption keys; your node issues a new card version.

    Old encryption keys stay in the keystore so envelopes already sealed for them remain
    readable; peers accept the old signing key for their grace period.
    """
    pending = _pending(keystore_path)
    if pending.exists():
        raise Conflict(f"an unfinished rotation left {pending}: if `liaison directory` shows "
                       "your new key id, move it over your keystore; otherwise delete it")
    passphrase = read_passphrase(passphrase_file, prompt=f"Passphrase for {keystore_path}",
                                 new=False)
    # The passphrase is needed twice: to open the keystore and to seal the new one.
    current = keystore_mod.load(keystore_path, passphrase)
    cache = local_cache(keystore_path)
    result = run(_rotate(current, keystore_path, pending, passphrase, cache))
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"rotated the keys of {current.officer}: card version {result['version']}, "
                   f"signing key {result['signing_key_id']}, encryption key "
                   f"{result['encryption_key_id']} (old keys kept to read older envelopes)")


async def _rotate(current: keystore_mod.Keystore, path: Path, pending: Path,
                  passphrase: bytes, cache: LocalCache) -> dict[str, object]:
    async with node_session(current, path, cache) as node:
        directory = await node.directory(now=cli_clock().host_now())
        card = directory.cards.get(current.officer)
        if card is None:
            raise NotFound(f"{current.officer} is not in your node's directory yet")
        new, statement = keystore_mod.rotated(current, serial=card.version + 1, now=now_ms(),
                                              grace_ms=GRACE_HINT_MS)
        keystore_mod.save(pending, new, passphrase)
        try:
            answer = await node.rotate_keys(statement)
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
    os.replace(pending, path)
    # The node ended the old key's sessions; the caches were sealed under it anyway.
    cache.clear()
    return {"officer": current.officer, **answer}


@click.command("export-public", cls=Command)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the request to this file (else to stdout, which must not be a "
                   "terminal: the request is binary).")
@keystore_options
def export_public_cmd(out: Path | None, keystore_path: Path,
                      passphrase_file: Path | None) -> None:
    """Your enrolment request again: public keys only, signed, for your administrator.

    The same card request `liaison officer init` wrote (name, role, almanac entry), with
    the keystore's current keys, e.g. after a rotation or when the first file was lost.
    Confirm the key ids printed on stderr with your administrator by phone.
    """
    if out is None and sys.stdout.isatty():
        raise click.UsageError("the request is binary: give --out FILE or redirect stdout")
    ks = load_keystore(keystore_path, passphrase_file)
    request = keystore_mod.export_request(ks)
    if request is None:
        # A keystore from before requests were kept: the home node's card has the rest.
        request = run(_request_from_card(ks))
    if out is not None:
        certificates.write_public(out, request)
        click.echo(f"wrote enrolment request {out} for {ks.officer}", err=True)
    else:
        sys.stdout.buffer.write(request)
        sys.stdout.buffer.flush()
    click.echo(f"  signing key id:    {ks.signing.key_id.hex()}", err=True)
    click.echo(f"  encryption key id: {ks.encryption.key_id.hex()}", err=True)


async def _request_from_card(ks: keystore_mod.Keystore) -> bytes:
    from liaison_net.client.session import NodeSession  # aiohttp: on use

    async with NodeSession(ks) as node:
        directory = await node.directory(now=cli_clock().host_now())
    card = directory.cards.get(ks.officer)
    if card is None:
        raise NotFound(f"this keystore predates kept enrolment requests and your node has no "
                       f"card for {ks.officer}: ask your administrator to enrol you from a "
                       "new `liaison officer init`")
    return sign_enrolment_request(
        renewal(card, signing_public=ks.signing.public,
                encryption_public=ks.encryption.public), ks.signing)
