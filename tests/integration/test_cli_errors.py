"""Every officer CLI error is one clear line on stderr, `error: <code>: <detail>`, nothing on
stdout, and exit code 2: run as a real `liaison` process against a real node."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from liaison_net.client import keystore as ks
from tests.integration.network import LIAISON, Network, free_port
from tests.integration.officers import PASSPHRASE, enrol


@dataclass(frozen=True)
class Live:
    net: Network
    keystore: Path  # nl/jdevries, enrolled on the running node nl
    node_down: Path  # a keystore whose node URL is a closed port
    damaged: Path  # a keystore with one byte changed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    net = Network.create(tmp_path_factory.mktemp("cli-errors"), node_ids=("nl",))
    try:
        jan = enrol(net, "nl/jdevries")
        net.start("nl")
        node_down = net.root / "down.keystore"
        ks.create(node_down, "nl/mbakker", "Mia Bakker", "liaison officer",
                  f"https://127.0.0.1:{free_port()}", net.ca_cert.read_bytes(), PASSPHRASE)
        damaged = net.root / "damaged.keystore"
        raw = bytearray(jan.path.read_bytes())
        raw[-20] ^= 0x01
        damaged.write_bytes(bytes(raw))
        yield Live(net, jan.path, node_down, damaged)
    finally:
        net.stop_all()


SEND = ("send", "--subject", "Vehicle sighting", "--text", "Blue van, NL plates",
        "--handling", "H0", "--tlp", "AMBER", "--purpose", "drug trafficking inquiry")

#: (case, arguments, keystore, passphrase, the line's start). Keystore: "jan", "down",
#: "damaged" or a path that does not exist; passphrase None: none in the environment.
CASES = [
    ("unknown officer", (*SEND, "--to", "nl/nobody"), "jan", PASSPHRASE,
     "error: not_found: unknown recipient nl/nobody"),
    ("wrong passphrase", ("inbox",), "jan", b"not the passphrase",
     "error: cannot_open: wrong passphrase or damaged keystore"),
    ("damaged keystore", ("inbox",), "damaged", PASSPHRASE,
     "error: cannot_open: wrong passphrase or damaged keystore"),
    ("node down", ("inbox",), "down", PASSPHRASE,
     "error: unavailable: cannot reach node at https://127.0.0.1:"),
    ("node down, following", ("inbox", "--follow"), "down", PASSPHRASE,
     "error: unavailable: cannot reach node at https://127.0.0.1:"),
    ("node down, sending", (*SEND, "--to", "be/apeeters"), "down", PASSPHRASE,
     "error: unavailable: cannot reach node at https://127.0.0.1:"),
    ("refused by tag", (*SEND, "--to", "de-nw/kschmidt", "--share-with", "nl,be,lu"), "jan",
     PASSPHRASE, "error: policy.share_with: not sending to de-nw/kschmidt: send to de-nw "
                 "refused: the target node is not in the tag's share_with"),
    ("missing keystore", ("inbox",), "missing.keystore", PASSPHRASE,
     "error: config_error: no keystore at "),
    ("malformed id for read", ("read", "../../admin"), "jan", PASSPHRASE,
     "error: malformed: envelope id"),
    ("malformed id for status", ("status", "not-an-id"), "jan", PASSPHRASE,
     "error: malformed: envelope id"),
    ("unknown envelope", ("read", "01KAT1ZKB0000000000000000Z"), "jan", PASSPHRASE,
     "error: not_found: no such envelope for you"),
    ("passphrase fd not open", ("inbox", "--passphrase-fd", "97"), "jan", None,
     "error: config_error: cannot read the passphrase from file descriptor 97"),
]


@pytest.mark.parametrize(("args", "keystore", "passphrase", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_cli_error_is_one_line_and_a_non_zero_exit(
        live: Live, args: tuple[str, ...], keystore: str, passphrase: bytes | None,
        expected: str) -> None:
    path = {"jan": live.keystore, "down": live.node_down,
            "damaged": live.damaged}.get(keystore, live.net.root / keystore)
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIAISON_PASSPHRASE", "LIAISON_KEYSTORE")}
    if passphrase is not None:
        env["LIAISON_PASSPHRASE"] = passphrase.decode()
    proc = subprocess.run([*LIAISON, *args, "--keystore", str(path)], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(expected), lines[0]
    assert len(lines[0]) < 400
