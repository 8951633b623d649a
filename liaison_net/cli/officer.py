"""Officer commands: `liaison officer init`, and `send`, `inbox`, `read`, `ack`, `status`,
`directory` at the top level (officers type them all day).

Everything that protects content happens in these commands, on the officer's machine:
keys come from the passphrase-protected keystore, the ownership tag is checked against
policy before anything is sealed (so a refusal names its reason without a round trip),
content is sealed for each recipient's key from the CA-verified directory, and an envelope
read from the inbox is verified, checked against its tag (DELIVER) and only then
decrypted. The clock is read here and passed down; the core never reads it. No key is
ever printed (key ids, which are public fingerprints, are shown so an enrolment can be
confirmed by phone); the keystore and passphrase plumbing every officer command shares is
in officer_common.

One module per command: officer_init (`officer init`), officer_send, officer_inbox
(`inbox`, `ack`), officer_read, officer_status, officer_logout; officer_keys
(`officer rotate`, `officer export-public`). This one assembles them.
"""

from __future__ import annotations

import click

from liaison_net.cli.commands import Group
from liaison_net.cli.officer_inbox import ack_cmd, acknowledge, inbox_cmd
from liaison_net.cli.officer_init import init_cmd
from liaison_net.cli.officer_logout import logout_cmd
from liaison_net.cli.officer_read import FOUR_EYES, read_cmd
from liaison_net.cli.officer_send import send_cmd
from liaison_net.cli.officer_status import status_cmd

__all__ = ["FOUR_EYES", "ack_cmd", "acknowledge", "inbox_cmd", "init_cmd", "logout_cmd",
           "officer", "read_cmd", "register", "send_cmd", "status_cmd"]


@click.group(cls=Group)
def officer() -> None:
    """Set up this machine for an officer: keys, keystore, enrolment request."""


officer.add_command(init_cmd)


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
