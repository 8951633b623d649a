"""The demo network: PKI, configs, node processes and enrolled officers under one directory.

Layout of the demo directory::

    certs/ca.key, certs/ca.crt       the network CA (``certificates.init_network``, as the CLI does)
    certs/<id>/                      each node's TLS and signing certificates (``init_node``)
    configs/<id>.toml                node configs, 127.0.0.1 and free ports
    data/<id>/node.sqlite3           each node's database (made by the node on first start)
    logs/<id>.log                    each node's JSON log (stdout and stderr)
    officers/<node>-<handle>.keystore, .request, passphrase
                                     (the four officers and the four duty desks <node>/desk)

Nodes run as real processes through the drills' harness (``liaison_net.drills.harness``):
each in its own session so a Ctrl-C in the terminal reaches only the demo, which then stops
them itself: SIGTERM (the node shuts down cleanly), then SIGKILL for any that outlive the
grace period. Officers are enrolled with ``liaison admin enrol-officer``, the
administrator's command.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization

from liaison_net.client import keystore as keystore_mod
from liaison_net.client.keystore import Keystore
from liaison_net.core.ids import node_of
from liaison_net.core.signals import DESK_HANDLE, desk_of
from liaison_net.demo.four_eyes_step import FOUR_EYES_SECTION
from liaison_net.drills.harness import (
    LIAISON,
    Deadline,
    HarnessError,
    HarnessTimeout,
    NodeProcess,
    NodeSet,
)
from liaison_net.pki import certificates

__all__ = ["DESKS", "LIAISON", "NODE_IDS", "OFFICERS", "Deadline", "DemoError", "DemoNetwork",
           "DemoTimeout", "NodeProcess", "Officer", "OfficerSpec", "liaison_command"]

NODE_IDS = ("be", "nl", "lu", "de-nw")
#: Fast retries and directory pushes: a demo on loopback should not wait for production
#: back-off curves. Everything else is the node's default.
DEMO_DELIVERY = {
    "backoff_initial_s": 0.2,
    "backoff_max_s": 2.0,
    "expiry_sweep_s": 1.0,
    "directory_push_s": 0.3,
    "request_timeout_s": 10.0,
}

#: Something the demo needed did not happen; the message says what (the harness's error,
#: so a node that will not start reads the same in the demo, the bench and the soak).
DemoError = HarnessError
#: The overall --timeout ran out.
DemoTimeout = HarnessTimeout


@dataclass(frozen=True)
class OfficerSpec:
    id: str
    name: str
    role: str = "liaison officer"

    @property
    def node(self) -> str:
        return node_of(self.id)

    @property
    def file_stem(self) -> str:
        return self.id.replace("/", "-")

    @property
    def is_desk(self) -> bool:
        return self.id.split("/", 1)[1] == DESK_HANDLE


OFFICERS = (
    OfficerSpec("nl/jdevries", "Jan de Vries"),
    OfficerSpec("be/mpeeters", "Marie Peeters"),
    OfficerSpec("lu/cschmit", "Claude Schmit"),
    OfficerSpec("de-nw/kmueller", "Katrin Müller"),
)
#: Each node's duty desk: where early-warning signals from other countries arrive. A desk
#: is enrolled like any officer (its keystore is the desk's, shared by whoever is on duty).
DESKS = tuple(OfficerSpec(desk_of(nid), f"{nid.upper()} duty desk", "duty desk")
              for nid in NODE_IDS)


@dataclass
class Officer:
    spec: OfficerSpec
    keystore: Keystore
    path: Path  # the keystore file
    signing_key_id: str = ""
    encryption_key_id: str = ""

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class DemoNetwork(NodeSet):
    node_ids: tuple[str, ...] = NODE_IDS
    officers: dict[str, Officer] = field(default_factory=dict)
    #: Config tables beside [node], [listen] and [[peers]]; the bench and the soak set theirs.
    SECTIONS: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "delivery": DEMO_DELIVERY, "four_eyes": FOUR_EYES_SECTION}
    DRILL: ClassVar[str] = "demo"

    @property
    def passphrase_file(self) -> Path:
        return self.root / "officers" / "passphrase"

    # --- PKI and configs ----------------------------------------------------------------

    def create(self) -> None:
        """The network CA, every node's certificates, and its config (nothing runs yet)."""
        if self.root.exists() and any(self.root.iterdir()):
            raise DemoError(f"{self.root} is not empty: give --dir a new or empty directory")
        self.root.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        certificates.init_network(self.certs, name="liaison_net demo network CA", now=now)
        for nid in self.node_ids:
            certificates.init_node(self.certs, nid, ca_dir=self.certs, now=now,
                          hostnames=["localhost"], ip_addresses=["127.0.0.1"])
        for sub in ("configs", "logs", "data", "officers"):
            (self.root / sub).mkdir(exist_ok=True)
        self.lay_out(self.node_ids)
        self.write_configs(sections=self.SECTIONS, peer_urls=self.peer_urls(),
                           comment=f"{self.DRILL.title()} node {{node}}: written by "
                                   f"`liaison {self.DRILL}`.")

    def peer_urls(self) -> dict[tuple[str, str], str]:
        """How each node reaches each peer, where not at the peer's own listener."""
        return {}

    # --- officers -----------------------------------------------------------------------

    def enrol(self, specs: tuple[OfficerSpec, ...], deadline: Deadline) -> None:
        """Each officer's keystore (made as `liaison officer init` does, on "their machine"),
        then enrolment by each node's administrator with `liaison admin enrol-officer`."""
        passphrase = secrets.token_urlsafe(18).encode()
        certificates.write_secret(self.passphrase_file, passphrase + b"\n")
        ca_pem = certificates.load_ca_certificate(self.ca_cert).public_bytes(
            serialization.Encoding.PEM)
        requests: list[tuple[OfficerSpec, Path]] = []
        for spec in specs:
            node = self.nodes[spec.node]
            path = self.root / "officers" / f"{spec.file_stem}.keystore"
            keystore, request = keystore_mod.create(path, spec.id, spec.name, spec.role,
                                                    node.client_url, ca_pem, passphrase)
            request_path = path.with_suffix(".request")
            certificates.write_public(request_path, request)
            self.officers[spec.id] = Officer(spec, keystore, path)
            requests.append((spec, request_path))
        with _running([[*LIAISON, "admin", "enrol-officer", str(request_path),
                        "--config", str(self.nodes[spec.node].config), "--json"]
                       for spec, request_path in requests]) as procs:
            for (spec, _), proc in zip(requests, procs, strict=True):
                try:
                    out, err = proc.communicate(timeout=deadline.left(f"enrolling {spec.id}"))
                except subprocess.TimeoutExpired:
                    raise DemoTimeout(f"the demo's {deadline.total:g} s timeout ran out while "
                                      f"enrolling {spec.id}") from None
                if proc.returncode != 0:
                    raise DemoError(f"`liaison admin enrol-officer` for {spec.id} failed: "
                                    f"{err.decode(errors='replace').strip()[-500:]}")
                result: dict[str, Any] = json.loads(out)
                officer = self.officers[spec.id]
                officer.signing_key_id = str(result["signing_key_id"])
                officer.encryption_key_id = str(result["encryption_key_id"])
                if officer.signing_key_id != officer.keystore.signing.key_id.hex():
                    raise DemoError(f"the card issued for {spec.id} names another signing key")

    def audit_verify(self, deadline: Deadline) -> dict[str, dict[str, Any]]:
        """`liaison admin audit verify --json` on every node: {node: result or error}."""
        results: dict[str, dict[str, Any]] = {}
        with _running([[*LIAISON, "admin", "audit", "verify", "--config", str(n.config),
                        "--json"] for n in self.nodes.values()]) as procs:
            for node, proc in zip(self.nodes.values(), procs, strict=True):
                try:
                    out, err = proc.communicate(timeout=deadline.left(
                        f"verifying the audit chain of {node.id}"))
                except subprocess.TimeoutExpired:
                    raise DemoTimeout(f"the demo's {deadline.total:g} s timeout ran out while "
                                      f"verifying the audit chain of {node.id}") from None
                try:
                    results[node.id] = json.loads(out)
                except ValueError:
                    results[node.id] = {"ok": False,
                                        "error": err.decode(errors="replace").strip()[-300:]}
        return results

    # --- telling the user how to use it -------------------------------------------------

    def commands(self) -> list[str]:
        """Shell commands to use a network left running with --keep, then to stop it."""
        liaison = liaison_command()
        pf = self.passphrase_file
        out = []
        for officer in self.officers.values():
            if not officer.spec.is_desk:
                out.append(f"{liaison} inbox --all --keystore {officer.path} --passphrase-file "
                           f"{pf}   # {officer.spec.name} ({officer.id})")
        nl = self.officers.get("nl/jdevries")
        be = self.officers.get("be/mpeeters")
        be_desk = self.officers.get(desk_of("be"))
        if be_desk is not None:
            out.append(f"{liaison} signal list --keystore {be_desk.path} --passphrase-file {pf}"
                       f"   # the {be_desk.spec.name}: signals for the desk")
        if nl is not None:
            out.append(f"{liaison} signal list --keystore {nl.path} --passphrase-file {pf}"
                       "   # signals Jan raised, and which desks acknowledged them")
        if nl is not None and be is not None:
            out.append(f"{liaison} send --keystore {nl.path} --passphrase-file {pf} "
                       f"--to {be.id} --subject 'Hello from NL' --text 'Test' --handling H0 "
                       "--tlp AMBER --purpose 'liaison demo'")
            out.append(f"{liaison} read ID --keystore {be.path} --passphrase-file {pf}")
            out.append(f"{liaison} send --keystore {nl.path} --passphrase-file {pf} "
                       "--to de-nw/kmueller --subject 'Benelux only' --text 'Test' "
                       "--handling H2 --tlp AMBER --share-with be,nl,lu --purpose 'liaison demo'"
                       "   # refused: policy.share_with")
        for node in self.nodes.values():
            out.append(f"{liaison} admin audit verify --config {node.config}")
        out.append(f"kill $(cat {self.root}/pids)   # stop the nodes")
        return out


def liaison_command() -> str:
    """How to type `liaison` for this installation (the venv need not be activated)."""
    script = Path(sys.executable).with_name("liaison")
    found = shutil.which("liaison")
    if found is not None and Path(found).resolve() == script.resolve():
        return "liaison"
    if script.is_file():
        return str(script)
    return f"{sys.executable} -m liaison_net.cli"


@contextlib.contextmanager
def _running(commands: list[list[str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start short-lived CLI commands in parallel; kill any still running on the way out."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            procs.append(subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
