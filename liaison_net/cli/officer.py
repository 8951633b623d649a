"""Officer commands: `liaison officer init`, and `send`, `inbox`, `read`, `ack`, `status`,
`directory` at the top level (officers type them all day).

Everything that protects content happens here, on the officer's machine: keys come from
the passphrase-protected keystore, the ownership tag is checked against policy before
anything is sealed (so a refusal names its reason without a round trip), content is
sealed for each recipient's key from the CA-verified directory, and an envelope read from
the inbox is verified, checked against its tag (DELIVER) and only then decrypted. The
clock is read here and passed down; the core never reads it. No key is ever printed (key
ids, which are public fingerprints, are shown so an enrolment can be confirmed by phone);
the keystore and passphrase plumbing every officer command shares is in officer_common.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from liaison_net.cli import officer_view as view
from liaison_net.cli.commands import Command, Group
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
    read_passphrase,
    run,
    warn_directory,
)
from liaison_net.client import addressing, approvals, reading
from liaison_net.client import keystore as keystore_mod
from liaison_net.client.directory import Directory
from liaison_net.core import art25, sealing
from liaison_net.core import content as content_mod
from liaison_net.core.almanac import Almanac
from liaison_net.core.approval import FourEyesPolicy
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import check_officer_id, id_from_text, node_of
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
    Conflict,
    Forbidden,
    LiaisonError,
    LimitExceeded,
    Malformed,
    NotFound,
    Revoked,
    UnknownKey,
)
from liaison_net.pki import certificates

# --- officer init ---------------------------------------------------------------------------

#: `read` asks for the approval that released an envelope when the network's default
#: four-eyes policy covers it (TLP:RED, H3, critical signals): one request more for those
#: only (a node's own wider policy is its own business; protocol.md §20).
FOUR_EYES = FourEyesPolicy()


@click.group(cls=Group)
def officer() -> None:
    """Set up this machine for an officer: keys, keystore, enrolment request."""


@officer.command("init")
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


# --- send -----------------------------------------------------------------------------------


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


# --- inbox, read, ack, status, directory ----------------------------------------------------


@click.command("inbox", cls=Command)
@click.option("--all", "show_all", is_flag=True,
              help="Include acknowledged envelopes and delivery evidence (which `liaison "
                   "status ID` shows per recipient).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the entries as JSON (with --follow: one JSON object a line).")
@click.option("--follow", is_flag=True,
              help="Keep running and print envelopes as they arrive, from your "
                   "acknowledged position on, until Ctrl-C.")
@keystore_options
def inbox_cmd(show_all: bool, as_json: bool, follow: bool, keystore_path: Path,
              passphrase_file: Path | None) -> None:
    """List your inbox (unacknowledged envelopes, or --all), or --follow it live.

    The most pressing first: flash, immediate, priority, routine, each in arrival order
    (--json too; --follow prints as they arrive).

    \b
    content: held = your node keeps it, sealed for you, until the tag's retention date:
      `liaison read ID` opens it, `liaison ack ID` takes it off this list (still readable);
    purged = that date has passed: the content is gone everywhere, only its tag is left.
    """
    ks = load_keystore(keystore_path, passphrase_file)
    if follow:
        from liaison_net.cli import officer_follow

        officer_follow.follow_inbox(ks, keystore_path, show_all=show_all, as_json=as_json)
        return

    cache = local_cache(keystore_path)

    async def go() -> None:
        from liaison_net.cli import delivery_status  # aiohttp and rich: on use only

        async with node_session(ks, keystore_path, cache) as node:
            items = [i for i in await node.inbox_all()
                     if show_all or (i.acked is None and i.kind != Kind.EVIDENCE.value)]
            if as_json:
                emit_json([view.inbox_json(i) for i in view.by_precedence(items)])
            else:
                view.print_inbox(items)
            # "delivered", back to each sender, over the same session
            await delivery_status.after_inbox(ks, keystore_path, items, node=node, cache=cache)

    run(go())


@click.command("read", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the envelope as JSON.")
@click.option("--reason", help="Why you consult it (up to 200 characters): your node "
              "records it with the consultation, for the data protection officer.")
@keystore_options
def read_cmd(envelope_id: str, as_json: bool, reason: str | None, keystore_path: Path,
             passphrase_file: Path | None) -> None:
    """Verify, check and decrypt envelope ID; show its tag, what it allows, the content.

    Your node audits every read (LED Art. 25 consultation) with the tag's purpose; give
    --reason where your service asks for one (docs/ownership.md: H3 and TLP:RED)."""
    wanted = id_from_text(envelope_id.strip())
    if reason is not None:
        reason = art25.check_reason(reason)
    ks = load_keystore(keystore_path, passphrase_file)

    cache = local_cache(keystore_path)

    def opened(raw: bytes, directory: Directory) -> tuple[Envelope, dict[str, Any]]:
        # now=None: reading days after delivery is fine; the node applied the clock on receipt.
        envelope = sealing.verify(raw, directory.lookup(), now=None)
        if envelope.id != wanted:
            raise Forbidden("the node answered with a different envelope than the one asked for")
        now = now_ms()
        # The receiving client decides too, as a node would: who signed it, the tag's owner,
        # a forward's original and tag, DELIVER (or FORWARD with consent) here.
        reading.check_received(envelope, directory, own_node=ks.node, now=now)
        plaintext = sealing.open_envelope(envelope, ks.officer, ks.encryption_keys)
        content = reading.readable(envelope, plaintext, reader_node=ks.node)
        return envelope, view.envelope_report(envelope, content, directory, own_node=ks.node,
                                              now=now)

    async def go() -> None:
        from liaison_net.cli import delivery_status  # aiohttp and rich: on use only
        from liaison_net.client.local_cache import verified_directory

        async with node_session(ks, keystore_path, cache) as node:  # one TLS session
            raw, updated = await node.fetch_noting_updates(envelope_id, reason=reason)
            directory, cached = await verified_directory(node, cache, ks,
                                                         now=cli_clock().host_now())
            try:
                envelope, report = opened(raw, directory)
            except LiaisonError:
                if not cached:
                    raise
                # A signer, a forward's original or a revocation newer than the cache:
                # decide again with the node's current directory.
                directory, _ = await verified_directory(node, cache, ks, refresh=True,
                                                        now=cli_clock().host_now())
                envelope, report = opened(raw, directory)
            warn_directory(directory)
            # The owner's restriction updates of it in this inbox, checked here.
            from liaison_net.client import restrictions
            warnings: list[str] = []
            standing = await restrictions.standing(
                node, ks, directory, envelope,
                reading.check_received(envelope, directory, own_node=ks.node, now=now_ms()),
                warnings) if updated else []
            for warning in warnings:
                click.echo(f"warning: {view.safe(warning)}", err=True)
            if FOUR_EYES.covers(envelope.header):  # the approval that released it
                released = approvals.released_by(envelope, await node.approval(envelope_id),
                                                 directory)
                if released is not None:
                    report["four_eyes"] = {"sender": released.sender, "at": released.at,
                                           "approver": released.approver,
                                           "unit": released.unit}
            if as_json:
                emit_json({**report, "restrictions": [s.to_json() for s in standing]})
            else:
                view.print_envelope(report)
                for s in standing:
                    click.echo(view.safe(s.line()))
                if "four_eyes" in report:
                    click.echo(f"four-eyes: sent by {report['four_eyes']['sender']}, "
                               f"approved by {report['four_eyes']['approver']} (verified)")
            # "opened", to the sender, over the same session
            await delivery_status.after_read(ks, keystore_path, envelope, directory,
                                             node=node, cache=cache)

    run(go())


@click.command("ack", cls=Command)
@click.argument("envelope_id", metavar="ID")
@keystore_options
def ack_cmd(envelope_id: str, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Acknowledge envelope ID in your inbox."""
    acknowledge(envelope_id, keystore_path, passphrase_file)


def acknowledge(envelope_id: str, keystore_path: Path, passphrase_file: Path | None) -> None:
    """Shared by `ack` and `signal ack`: the node records it (and, for a desk's signal,
    tells the sender)."""
    ks = load_keystore(keystore_path, passphrase_file)

    async def go() -> bool:
        async with node_session(ks, keystore_path) as node:
            return await node.ack(envelope_id)

    done = run(go())
    click.echo(f"acknowledged {envelope_id}" if done else f"{envelope_id} was already "
               "acknowledged")


@click.command("status", cls=Command)
@click.argument("envelope_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@keystore_options
def status_cmd(envelope_id: str, as_json: bool, keystore_path: Path,
               passphrase_file: Path | None) -> None:
    """Where envelope ID is, per recipient: accepted, relayed, delivered, opened (each from
    a signed statement, verified here), refused or expired (from your node's outbox)."""
    ks = load_keystore(keystore_path, passphrase_file)
    from liaison_net.cli import delivery_status  # aiohttp and rich: on use only

    delivery_status.show_status(ks, envelope_id, as_json=as_json,
                                cache=local_cache(keystore_path))


@click.command("logout", cls=Command)
@keystore_options
def logout_cmd(keystore_path: Path, passphrase_file: Path | None) -> None:
    """End your session: your node forgets its token and the copy kept here is deleted.

    Commands keep the session token and the verified directory beside the keystore
    (KEYSTORE.session, KEYSTORE.directory: sealed under your keys, 0600) so the next one
    needs no login; run this when you leave the machine. The next command logs in again.
    """
    ks = load_keystore(keystore_path, passphrase_file)
    cache = local_cache(keystore_path)

    async def go() -> bool:
        async with node_session(ks, keystore_path, cache) as node:
            return await node.logout()

    try:
        forgotten = run(go())
    except LiaisonError as exc:  # the node unreachable: the local copy goes all the same
        click.echo(f"warning: your node was not told: {exc.code}: {view.safe(exc.detail)}",
                   err=True)
        forgotten = False
    finally:
        cache.clear()
    click.echo(f"logged out {ks.officer}" + (" (the node ended the session)" if forgotten
                                             else " (no session was open)"))


def register(cli: click.Group) -> None:
    """Attach the officer commands to `liaison` (officer administration is in `admin`:
    admin_officers.register, called by cli/main.py)."""
    from liaison_net.cli import almanac, officer_keys, signals

    officer.add_command(officer_keys.rotate_cmd)
    officer.add_command(officer_keys.export_public_cmd)
    cli.add_command(signals.signal)
    cli.add_command(officer)
    for command in (send_cmd, inbox_cmd, read_cmd, ack_cmd, status_cmd, almanac.directory,
                    logout_cmd):
        cli.add_command(command)
