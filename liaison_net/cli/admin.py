"""`liaison admin ...`: PKI, enrolment, rotation, revocation, status, audit.

The group is lazy (``commands.LazyGroup``): ``_ADMIN_COMMANDS`` names the sub-commands that
live in the other ``admin_*`` modules with their one-line help, and a module is imported
only for the command being run. The tests start `liaison admin` by the hundred; each used
to import aiohttp's server, the store, the services and cryptography, whatever it did.
The two PKI commands are here, and import the certificates (cryptography) when they run.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import click

from liaison_net.cli.commands import LazyGroup, LazyTable
from liaison_net.cli.edge_clock import cli_clock

_CLI = "liaison_net.cli."
#: sub-command -> ("module:attribute", its one-line help: its docstring's first paragraph).
_ADMIN_COMMANDS: LazyTable = {
    "admin-key": (_CLI + "admin_approve:admin_key",
                  "Your own administrator key, for four-eyes administration ([admin] "
                  "four_eyes)."),
    "approve": (_CLI + "admin_approve:approve_cmd",
                "Approve pending operation OP as the second administrator; the node carries "
                "it out."),
    "audit": (_CLI + "admin_officers:audit",
              "Check the node's audit log: its hash chain, and the checkpoints its peers "
              "witnessed."),
    "backup": (_CLI + "admin_ops:backup_cmd",
               "Take a consistent snapshot of the node's database while it runs."),
    "enrol-officer": (_CLI + "admin_officers:enrol_officer_cmd",
                      "Issue an officer card from REQUEST_FILE (made by `liaison officer "
                      "init`)."),
    "keys": (_CLI + "admin_keys:keys",
             "Inspect the keys this node knows; review and co-sign node key changes."),
    "pending": (_CLI + "admin_approve:pending_cmd",
                "Operations waiting for a second administrator (four-eyes administration)."),
    "propose": (_CLI + "admin_approve:propose",
                "Propose an operation that a second administrator must approve ([admin] "
                "four_eyes)."),
    "pseudonym-key": (_CLI + "admin_keys:pseudonym_key",
                      "The network pseudonym key (subject pseudonyms of signals): rotate, "
                      "install, retire."),
    "restore": (_CLI + "admin_ops:restore_cmd",
                "Restore a checked backup into a STOPPED node's data directory."),
    "revocations": (_CLI + "admin_keys:revocations_cmd",
                    "Every revocation this node knows: its own and those its peers pushed."),
    "revoke": (_CLI + "admin_keys:revoke_cmd",
               "Revoke an officer's or this node's old signing key, everywhere, from now on."),
    "rotate-key": (_CLI + "admin_keys:rotate_key_cmd",
                   "Rotate the node's signing key (`node`) or TLS certificate (`tls`) under "
                   "live traffic."),
    "status": (_CLI + "admin_ops:status_cmd",
               "Queues, deliveries, refusals and backoff per peer, read from the node's "
               "store, and which worker of the node sends to each peer (its lease)."),
}


@click.group(cls=LazyGroup, lazy=_ADMIN_COMMANDS)
def admin() -> None:
    """Administer the network: PKI, nodes, officers, keys, audit."""


# --- PKI ------------------------------------------------------------------------------------
# The clock is read here, in the CLI, and passed down: pki functions take `now` as an argument.


def _echo_files(files: list[tuple[Path, str]]) -> None:
    for path, note in files:
        click.echo(f"  {path}  ({note})")


@admin.command("init-network")
@click.option(
    "--dir",
    "certs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Directory to create ca.key and ca.crt in.",
)
@click.option("--name", default="liaison_net network CA", show_default=True, help="CA common name.")
@click.option("--json", "as_json", is_flag=True, help="Print the created paths as JSON.")
def init_network_cmd(certs_dir: Path, name: str, as_json: bool) -> None:
    """Create the network CA: ca.key (secret) and the self-signed ca.crt.

    The CA signs every node's TLS and signing certificates; ca.crt is the one trust anchor
    all nodes share. Run this once per network, on the machine that will keep the CA. It
    refuses to overwrite an existing CA. After enrolling the nodes with init-node, move
    ca.key offline: no running node needs it.
    """
    from liaison_net.pki import certificates  # cryptography: only the commands that sign

    paths = certificates.init_network(certs_dir, name=name, now=cli_clock().host_now())
    if as_json:
        click.echo(json.dumps(paths.as_dict()))
        return
    click.echo(f"created network CA {name!r} in {paths.dir}")
    _echo_files([(paths.ca_key, "secret, 0600"), (paths.ca_cert, "public, share with every node")])
    click.echo("next: liaison admin init-node ID for each node; then move ca.key offline")


@admin.command("init-node")
@click.argument("node_id", metavar="ID")
@click.option(
    "--dir",
    "certs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Parent of the node directory; files go to DIR/ID/.",
)
@click.option(
    "--ca-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("certs"),
    show_default=True,
    help="Directory holding ca.key and ca.crt from init-network.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("localhost", "127.0.0.1"),
    show_default=True,
    help="DNS name or IP address peers use to reach the node (repeat for several).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the created paths as JSON.")
def init_node_cmd(
    node_id: str, certs_dir: Path, ca_dir: Path, hosts: tuple[str, ...], as_json: bool
) -> None:
    """Enrol node ID (e.g. be, nl, lu, de-nw): issue its certificates from the network CA.

    Writes DIR/ID/ with tls.key + tls.crt (mutual TLS 1.3, node id bound in the
    certificate, the --host names as SANs), signing.key + signing.crt (Ed25519 key for
    envelopes, certified by the CA) and a copy of ca.crt. The directory is self-contained:
    copy it to the node's machine. The CA private key is never copied into it.
    """
    from liaison_net.pki import certificates

    names = [host for host in hosts if not _is_ip(host)]
    ips = [host for host in hosts if _is_ip(host)]
    paths = certificates.init_node(
        certs_dir, node_id, ca_dir=ca_dir, now=cli_clock().host_now(), hostnames=names,
        ip_addresses=ips
    )
    if as_json:
        click.echo(json.dumps(paths.as_dict()))
        return
    click.echo(f"enrolled node {node_id!r} in {paths.dir} (hosts: {', '.join(hosts)})")
    _echo_files(
        [
            (paths.tls_key, "secret, 0600"),
            (paths.tls_cert, "public"),
            (paths.signing_key, "secret, 0600"),
            (paths.signing_cert, "public"),
            (paths.ca_cert, "public, copy of the network CA certificate"),
        ]
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
