"""`liaison send`: the tag checked against policy before anything is sealed (a refusal
names its reason without a round trip), the content sealed for each recipient's key from
the CA-verified directory, then handed to the officer's node."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from liaison_net.cli.commands import Command
from liaison_net.cli.edge_clock import cli_clock
from liaison_net.cli.officer_common import (
    build_tag,
    check_send,
    check_tag_options,
    comma_nodes,
    emit_json,
    keystore_options,
    load_keystore,
    local_cache,
    node_session,
    now_ms,
    run,
    warn_directory,
)
from liaison_net.client import addressing
from liaison_net.client.directory import Directory
from liaison_net.core import content as content_mod
from liaison_net.core import sealing
from liaison_net.core.envelope import Precedence
from liaison_net.core.ids import node_of
from liaison_net.core.limits import DAY_MS, DEFAULT_LIMITS, HOUR_MS
from liaison_net.core.ownership import (
    Handling,
    OwnershipTag,
    PermittedAction,
    SourceReliability,
    Tlp,
)
from liaison_net.errors import (
    BadTimestamp,
    ConfigError,
    LimitExceeded,
    Malformed,
    NotFound,
    Revoked,
    UnknownKey,
)


def _read_text(text: str | None, file: Path | None) -> str:
    if text is not None and file is not None:
        raise click.UsageError("give either --text or --file, not both")
    if text is None and file is not None:
        try:
            with file.open("rb") as fh:
                raw = fh.read(DEFAULT_LIMITS.max_body_bytes + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
        if len(raw) > DEFAULT_LIMITS.max_body_bytes:
            raise LimitExceeded(f"{file} is larger than {DEFAULT_LIMITS.max_body_bytes} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed(f"{file} is not UTF-8 text") from None
    elif text is None:
        stdin = sys.stdin
        if stdin is None or stdin.isatty():
            raise click.UsageError("give the text with --text or --file, or pipe it on stdin")
        text = stdin.read(DEFAULT_LIMITS.max_body_bytes + 1)
    # Text from Windows editors: keep one line ending, which content allows.
    return text.replace("\r\n", "\n")


@click.command("send", cls=Command)
@click.option("--to", "recipients", multiple=True, required=True,
              help="Recipient officer id, or coverage:COUNTRY/AREA for every officer who "
                   "covers it, e.g. coverage:co/drugs (repeat for several).")
@click.option("--subject", required=True, help="Subject line (up to 200 characters).")
@click.option("--text", help="The message text (else --file, else stdin).")
@click.option("--file", "text_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the message text from a UTF-8 file.")
@click.option("--handling", type=click.Choice([h.value for h in Handling]), required=True,
              help="SIENA handling code H0-H3.")
@click.option("--conditions", default="", help="The restrictions, required with H3.")
@click.option("--tlp", type=click.Choice([t.value for t in Tlp], case_sensitive=False),
              required=True, help="TLP 2.0 label.")
@click.option("--community", default="", help="The community, required with TLP GREEN.")
@click.option("--share-with", help="Comma-separated nodes the information may reach "
              "[default: your node and the recipients' nodes].")
@click.option("--purpose", required=True, help="What the information may be used for.")
@click.option("--retain-days", type=click.IntRange(1, 3650), default=90, show_default=True,
              help="Days until every node and client purges the content.")
@click.option("--source", type=click.Choice([s.value for s in SourceReliability]),
              default="X", show_default=True, help="Source reliability (A, B, C, X).")
@click.option("--accuracy", type=click.IntRange(1, 4), default=4, show_default=True,
              help="Information accuracy (1-4).")
@click.option("--permit", multiple=True,
              type=click.Choice([a.value for a in PermittedAction]),
              help="Action the owner permits in advance (repeatable).")
@click.option("--precedence", type=click.Choice([p.label for p in Precedence]),
              default="routine", show_default=True)
@click.option("--expires-hours", type=click.IntRange(1, 30 * 24), default=72,
              show_default=True, help="Undelivered after this, the sender gets a notice.")
@click.option("--unit", default="liaison", show_default=True,
              help="Your unit: with your node, the owner of the information.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keystore_options
def send_cmd(recipients: tuple[str, ...], subject: str, text: str | None,
             text_file: Path | None, handling: str, conditions: str, tlp: str, community: str,
             share_with: str | None, purpose: str, retain_days: int, source: str,
             accuracy: int, permit: tuple[str, ...], precedence: str, expires_hours: int,
             unit: str, as_json: bool, keystore_path: Path,
             passphrase_file: Path | None) -> None:
    """Seal a message for each recipient and hand it to your node.

    The ownership tag is checked before anything leaves this machine: a recipient on a node
    the tag does not allow is refused here, with the reason. A coverage address
    (coverage:co/drugs) resolves here too, from the verified directory, to every officer
    whose card covers it; each of them is checked against the tag like a named recipient.
    """
    addresses = addressing.parse_addresses(recipients)
    named = [a for a in addresses if isinstance(a, str)]
    check_tag_options(handling=handling, tlp=tlp, conditions=conditions, community=community,
                      purpose=purpose, unit=unit)
    body_text = _read_text(text, text_file)
    ks = load_keystore(keystore_path, passphrase_file)
    now = now_ms()
    own = ks.node
    explicit_nodes = comma_nodes(share_with)

    def tag_for(to: list[str]) -> OwnershipTag:
        nodes = explicit_nodes or frozenset({own, *(node_of(r) for r in to)})
        return build_tag(own=own, unit=unit, handling=handling, tlp=tlp, source=source,
                         accuracy=accuracy, share_with=nodes, permit=permit, purpose=purpose,
                         retain_until=now + retain_days * DAY_MS, conditions=conditions,
                         community=community)

    # Officers named by id are refused here, before the network; coverage recipients are
    # known, and checked the same way, once the directory is in.
    check_send(tag_for(named), named, own=own, now=now)
    plaintext = content_mod.encode(content_mod.Content(subject=subject, text=body_text))

    def sealed(directory: Directory) -> tuple[bytes, addressing.Resolution, OwnershipTag]:
        own_card = directory.cards.get(ks.officer)
        if own_card is None or own_card.signing_public != ks.signing.public:
            raise UnknownKey(f"the directory has no card for {ks.officer} with this "
                             "keystore's signing key: has your administrator enrolled you?")
        resolved = addressing.resolve(addresses, directory, sender=ks.officer, now=now)
        tag = tag_for(resolved.officers)
        check_send(tag, resolved.officers, own=own, now=now)
        keys = [directory.recipient(r, now=now) for r in resolved.officers]
        envelope = sealing.seal(
            sender=ks.officer, sender_key=ks.signing, recipients=keys, tag=tag,
            plaintext=plaintext, now=now, expires=now + expires_hours * HOUR_MS,
            precedence=Precedence.from_label(precedence))
        return envelope.to_bytes(), resolved, tag

    cache = local_cache(keystore_path)

    async def go() -> tuple[str, str, addressing.Resolution, OwnershipTag, bool]:
        from liaison_net.client.local_cache import verified_directory

        async with node_session(ks, keystore_path, cache) as node:
            # Warm, the directory comes from the cache and this is one request (submit).
            # Whatever the cached directory cannot do (a coverage address it resolves to
            # no one, a recipient the node refuses as unknown or revoked) is tried once
            # more with the node's current directory.
            directory, cached = await verified_directory(
                node, cache, ks, now=cli_clock().host_now(), wanted=[ks.officer, *named])
            try:
                raw, resolved, tag = sealed(directory)
                result = await node.submit(raw)
            except (NotFound, Revoked, UnknownKey, BadTimestamp):
                if not cached:
                    raise
                directory, cached = await verified_directory(
                    node, cache, ks, now=cli_clock().host_now(), refresh=True)
                raw, resolved, tag = sealed(directory)
                result = await node.submit(raw)
            warn_directory(directory)
            return result.id, result.status, resolved, tag, result.held

    envelope_id, status, resolved, tag, held = run(go())
    to = resolved.officers
    if as_json:
        emit_json({"id": envelope_id, "status": status, "recipients": to,
                    "coverage": resolved.coverage, "share_with": sorted(tag.share_with),
                    "held": held})
    else:
        click.echo(f"{envelope_id} {status} for {', '.join(to)}")
        if held:  # four-eyes: nothing leaves before a second officer approves
            click.echo("held: a second officer of your unit must approve it "
                       "(`liaison approvals`; `liaison status ID` shows who did)", err=True)
        for coverage, officers in resolved.coverage.items():
            click.echo(f"  {coverage}: {', '.join(officers)}")

