"""The keystore from scripts: the passphrase on a file descriptor, and `liaison officer
export-public` (the enrolment request again, for the current keys). No node runs: the
keystore's node URL is a closed port, so `unavailable` proves a command got past the
keystore."""

# ruff: noqa: F811
# (F811: the `run` and `network` fixtures are imported from test_officer_cli_offline and
# named again as test parameters, which is how pytest hands fixtures over.)

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from liaison_net.client import keystore
from liaison_net.core import codec, crypto
from liaison_net.core.identity import verify_enrolment_request
from tests.test_officer_cli_offline import (  # noqa: F401  (fixtures)
    PASSPHRASE,
    Network,
    Run,
    _init_officer,
    network,
    run,
)


def _pipe_with(text: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, text)
    os.close(write_end)
    return read_end


def test_passphrase_fd_reads_only_the_first_line(run: Run, network: Network,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    monkeypatch.delenv("LIAISON_PASSPHRASE")
    fd = _pipe_with(PASSPHRASE.encode() + b"\nwhat follows is not read\n")
    try:
        result = run("inbox", "--keystore", ks_path, "--passphrase-fd", str(fd))
        assert result.err.startswith("error: unavailable: cannot reach node")  # key opened
        assert os.read(fd, 100) == b"what follows is not read\n"
    finally:
        os.close(fd)


def test_passphrase_fd_with_a_wrong_passphrase_says_so(run: Run, network: Network,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    monkeypatch.delenv("LIAISON_PASSPHRASE")
    fd = _pipe_with(b"not the passphrase\r\n")
    try:
        result = run("inbox", "--keystore", ks_path, "--passphrase-fd", str(fd))
    finally:
        os.close(fd)
    assert (result.code, result.err) == (
        2, "error: cannot_open: wrong passphrase or damaged keystore\n")


def test_passphrase_fd_that_is_not_open_is_one_clear_error(
        run: Run, network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    monkeypatch.delenv("LIAISON_PASSPHRASE")
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    result = run("inbox", "--keystore", ks_path, "--passphrase-fd", str(read_end))
    assert result.code == 2
    assert result.err.startswith(f"error: config_error: cannot read the passphrase from file "
                                 f"descriptor {read_end}: ")
    assert result.err.count("\n") == 1


def test_passphrase_fd_and_file_together_are_refused(
        run: Run, network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    monkeypatch.delenv("LIAISON_PASSPHRASE")
    secret = network.root / "pass.txt"
    secret.write_text(PASSPHRASE + "\n")
    result = run("inbox", "--keystore", ks_path, "--passphrase-file", secret,
                 "--passphrase-fd", "0")
    assert result.code == 2 and "not both" in result.err


def test_export_public_writes_the_request_officer_init_wrote(
        run: Run, network: Network) -> None:
    ks_path, request_path, _ = _init_officer(run, network)
    out = network.root / "again.request"
    result = run("officer", "export-public", "--keystore", ks_path, "--out", out)
    assert result.code == 0, result.err
    # Ed25519 signatures are deterministic and the encoding canonical: the same bytes.
    assert out.read_bytes() == request_path.read_bytes()
    ks = keystore.load(ks_path, PASSPHRASE.encode())
    assert ks.signing.key_id.hex() in result.err
    assert PASSPHRASE not in result.out + result.err


def test_export_public_prints_the_request_to_a_pipe(run: Run, network: Network) -> None:
    ks_path, request_path, _ = _init_officer(run, network)
    proc = subprocess.run(
        [sys.executable, "-m", "liaison_net.cli", "officer", "export-public", "--keystore",
         str(ks_path)], capture_output=True, timeout=60,
        env={**os.environ, "LIAISON_PASSPHRASE": PASSPHRASE})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == request_path.read_bytes()


def test_export_public_after_a_rotation_carries_the_new_keys(
        run: Run, network: Network) -> None:
    ks_path, request_path, _ = _init_officer(run, network, name="Jan de Vries")
    ks = keystore.load(ks_path, PASSPHRASE.encode())
    new, _statement = keystore.rotated(ks, serial=2, now=1, grace_ms=0)
    keystore.save(ks_path, new, PASSPHRASE.encode())
    out = network.root / "rotated.request"
    assert run("officer", "export-public", "--keystore", ks_path, "--out", out).code == 0
    request = verify_enrolment_request(out.read_bytes())
    first = verify_enrolment_request(request_path.read_bytes())
    assert (request.signing_public, request.encryption_public) == (new.signing.public,
                                                                  new.encryption.public)
    assert (request.officer, request.name, request.role) == (first.officer, first.name,
                                                             first.role)


def test_a_version_1_keystore_still_opens_and_asks_the_node_for_the_card(
        run: Run, network: Network) -> None:
    ks_path, _, _ = _init_officer(run, network)
    ks = keystore.load(ks_path, PASSPHRASE.encode())
    wire = ks.to_wire()
    del wire["request"]
    wire["version"] = 1
    old = network.root / "v1.keystore"
    old.write_bytes(keystore.MAGIC + crypto.seal_with_passphrase(codec.pack(wire),
                                                                 PASSPHRASE.encode()))
    loaded = keystore.load(old, PASSPHRASE.encode())
    assert loaded.request is None and loaded.signing.public == ks.signing.public
    assert keystore.export_request(loaded) is None
    result = run("officer", "export-public", "--keystore", old, "--out",
                 network.root / "x.request")
    assert result.code == 2
    assert result.err.startswith("error: unavailable: cannot reach node")
    assert not (network.root / "x.request").exists()


def test_export_public_refuses_a_terminal_without_out(run: Run, network: Network,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ks_path, _, _ = _init_officer(run, network)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = run("officer", "export-public", "--keystore", ks_path)
    assert result.code == 2 and "--out" in result.err
