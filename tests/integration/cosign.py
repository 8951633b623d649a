"""Node key changes the way administrators make them: `rotate-key node` or `revoke node`
writes the statement, other countries' administrators co-sign the file with `keys cosign`,
the node's administrator applies it with `keys apply`; and, for hostile cases, a directory
push made by hand with a peer's real TLS certificate."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from liaison_net.core import codec, crypto
from liaison_net.pki.certificates import node_hostname
from tests.integration.network import Network, https, peer_tls, run_cli


def config(net: Network, nid: str) -> str:
    return str(net.nodes[nid].config)


def cosign(net: Network, statement: Path, *by: str) -> None:
    for nid in by:
        run_cli("admin", "keys", "cosign", str(statement), "--config", config(net, nid),
                "--yes", "--json")


def apply(net: Network, nid: str, statement: Path) -> dict[str, Any]:
    return dict(json.loads(run_cli("admin", "keys", "apply", str(statement), "--config",
                                   config(net, nid), "--json").stdout))


def prepare_rotation(net: Network, nid: str, *, key_lost: bool = False) -> dict[str, Any]:
    args = ["admin", "rotate-key", "node", "--config", config(net, nid), "--ca",
            str(net.certs), "--json"]
    if key_lost:
        args += ["--key-lost", "--reason", "signing key lost with the HSM"]
    return dict(json.loads(run_cli(*args).stdout))


def copy_of(prepared: dict[str, Any], to: Path) -> Path:
    """A copy of the prepared statement, as one administrator mails it to another."""
    shutil.copyfile(prepared["statement"], to)
    return to


def rotate(net: Network, nid: str, cosigners: tuple[str, ...], work: Path) -> dict[str, Any]:
    """The whole honest rotation: prepare, co-sign by ``cosigners``, apply."""
    prepared = prepare_rotation(net, nid)
    statement = copy_of(prepared, work / f"{nid}-{prepared['serial']}.keychange")
    cosign(net, statement, *cosigners)
    return apply(net, nid, statement)


def peer_key_of(net: Network, at: str, peer: str) -> str | None:
    """The id of the signing key ``at`` holds for node ``peer``: the `peer-signing` row of
    `admin keys list`, read from ``at``'s database. Tests poll it; a CLI call per poll is a
    Python start and about a second of CPU for its imports, several on a loaded machine
    (the state each key ends in is still checked through `admin keys list`)."""
    with contextlib.closing(sqlite3.connect(net.database(at), timeout=10)) as db:
        row = db.execute("SELECT signing_public FROM node_keys WHERE node = ?",
                         (peer,)).fetchone()
    return None if row is None else crypto.signing_key_id(bytes(row[0])).hex()


async def push_directory(net: Network, as_node: str, to: str, cert_pem: bytes,
                         chain: list[bytes]) -> tuple[int, bytes]:
    """A directory push from ``as_node`` (its real TLS certificate) carrying ``cert_pem``
    and the key change ``chain``: what a node, or whoever holds its keys, can send."""
    return await https(
        net.nodes[to].federation_port, peer_tls(net, as_node), node_hostname(to), "POST",
        "/fed/v1/directory",
        data=codec.pack({"origin": as_node, "node_cert": cert_pem, "cards": [],
                         "key_changes": chain}),
        headers={"Content-Type": "application/x-msgpack"})
