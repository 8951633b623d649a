"""Node key changes need the other countries (issue 18), with four real nodes.

nl's new signing key is certified by the network CA, yet no peer takes it with one
co-signature, with be's co-signature twice, or with nl's own as the second; each refusal is
audited (`key.change_refused`) and be's administrator sees the statement as pending. With
be's and lu's co-signatures every peer takes it. A replayed older statement (with the
certificate of the key it introduced) and a statement that skips a serial are refused by
every peer; the emergency path (key lost) also needs the threshold, and leaves no grace to
the lost key. And a node whose key files are replaced by hand, without a co-signed change,
does not switch to the new key.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net.core import codec, crypto, key_change
from liaison_net.pki import key_change_files, reissue
from tests.integration.cosign import (
    apply,
    config,
    copy_of,
    cosign,
    peer_key_of,
    prepare_rotation,
    push_directory,
    rotate,
)
from tests.integration.network import Network, audit_rows, last_audit_seq, run_cli, wait_for

pytestmark = pytest.mark.slow

NODES = ("nl", "be", "lu", "de-nw")
PEERS = ("be", "lu", "de-nw")
SLOW = 120.0


def signing_key(net: Network, nid: str) -> crypto.SigningKeyPair:
    return crypto.signing_key_from_seed((net.certs / nid / "signing.key").read_bytes())


def with_cosignatures(net: Network, raw: bytes, *by: str) -> bytes:
    """The statement with co-signatures made by hand (repeats and the subject allowed)."""
    node, body, signature, _ = key_change.split(raw)
    return codec.pack([node, body, signature, [
        [nid, crypto.sign(signing_key(net, nid), key_change.COSIGN_DOMAIN + body)]
        for nid in by]])


async def refused_everywhere(net: Network, cert: bytes, chain: list[bytes], code: str,
                             key_id: str) -> None:
    """Pushed as nl to every peer: refused with ``code``, audited, nl's key unchanged."""
    for peer in PEERS:
        before = last_audit_seq(net, peer)
        status, answer = await push_directory(net, "nl", peer, cert, chain)
        assert status in (403, 409) and code.encode() in answer, (peer, status, answer[:200])
        assert any(r.event == "key.change_refused" and r.detail["code"] == code
                   and r.actor == "nl" for r in audit_rows(net, peer, after=before)), peer
        assert peer_key_of(net, peer, "nl") == key_id, peer


def everywhere(net: Network, key_id: str, what: str) -> None:
    wait_for(lambda: all(peer_key_of(net, p, "nl") == key_id for p in PEERS), timeout=SLOW,
             what=what)


def pending(net: Network, nid: str) -> list[dict[str, object]]:
    return list(json.loads(run_cli("admin", "keys", "pending", "--config", config(net, nid),
                                   "--json").stdout))


async def test_node_key_changes_need_two_other_countries_at_every_peer(
        make_network: type[Network], tmp_path: Path) -> None:
    net = make_network.create(node_ids=NODES)
    for nid in NODES:
        net.start(nid)
    old = signing_key(net, "nl").key_id.hex()
    await asyncio.to_thread(everywhere, net, old, "every peer to know nl's key")

    # nl prepares a rotation: pending here, and nl cannot co-sign its own change.
    prepared = prepare_rotation(net, "nl")
    assert (prepared["kind"], prepared["serial"]) == ("rotate", 1)
    [mine] = pending(net, "nl")
    assert mine["where"] == "here" and mine["cosigned_by"] == [] and mine["needed"] == 2
    itself = run_cli("admin", "keys", "cosign", prepared["statement"], "--config",
                     config(net, "nl"), "--yes", check=False)
    assert itself.returncode != 0 and "forbidden" in itself.stderr

    # Whoever holds nl's keys and the CA's certificate for the new key pushes it with too
    # few distinct other countries: refused by every peer.
    new_cert = (net.certs / "nl" / key_change_files.NEXT_CERT_FILE).read_bytes()
    raw = Path(prepared["statement"]).read_bytes()
    for signers in (("be",), ("be", "be"), ("be", "nl"), ()):
        await refused_everywhere(net, new_cert, [with_cosignatures(net, raw, *signers)],
                                 "cosign_threshold", old)
    # ... and with none at all, only the CA's certificate (what every peer took before).
    await refused_everywhere(net, new_cert, [], "cosign_threshold", old)
    seen = [r for r in pending(net, "be") if r["where"] == "peer"]
    assert seen and seen[0]["node"] == "nl" and seen[0]["serial"] == 1

    # The honest CLI refuses to apply a statement with one co-signature.
    one = copy_of(prepared, tmp_path / "one.keychange")
    cosign(net, one, "be")
    refused = run_cli("admin", "keys", "apply", str(one), "--config", config(net, "nl"),
                      check=False)
    assert refused.returncode != 0 and "cosign_threshold" in refused.stderr

    # be and lu co-sign: every peer takes the new key, audited with who co-signed.
    two = copy_of(prepared, tmp_path / "two.keychange")
    before = {p: last_audit_seq(net, p) for p in PEERS}
    cosign(net, two, "be", "lu")
    started = time.monotonic()
    first = apply(net, "nl", two)
    assert first["cosigned_by"] == ["be", "lu"]
    await asyncio.to_thread(everywhere, net, first["new_key_id"],
                            "every peer to take nl's co-signed new key")
    print(f"\nco-signed rotation applied and held by all 3 peers within "
          f"{time.monotonic() - started:.2f} s")
    for peer in PEERS:
        rotated = [r for r in audit_rows(net, peer, after=before[peer])
                   if r.event == "key.rotated" and r.actor == "nl"]
        assert rotated and rotated[0].detail["serial"] == 1
        assert rotated[0].detail["cosigners"] == "be,lu"
    assert pending(net, "nl") == []

    # A second rotation, co-signed by be and de-nw; then the first statement replayed with
    # the certificate of the key it introduced: refused by every peer.
    second = rotate(net, "nl", ("be", "de-nw"), tmp_path)
    assert second["serial"] == 2
    await asyncio.to_thread(everywhere, net, second["new_key_id"],
                            "every peer to take nl's second key")
    applied = key_change_files.chain(net.certs / "nl")
    assert [s for s, _ in applied] == [1, 2]
    await refused_everywhere(net, new_cert, [applied[0][1]], "serial_replayed",
                             second["new_key_id"])

    # A properly co-signed change that skips serial 3: refused by every peer.
    spare = tmp_path / "spare"
    spare.mkdir()
    nxt = key_change_files.prepare_next_key(spare, "nl", ca_dir=net.certs,
                                            now=datetime.now(UTC))
    current = signing_key(net, "nl")
    skipping = key_change.propose(key_change.KeyChange(
        key_change.Kind.ROTATE, "nl", current.key_id,
        crypto.signing_key_from_seed(nxt.seed).public, 4, 1, "skips one"), current)
    await refused_everywhere(net, nxt.cert_pem,
                             [with_cosignatures(net, skipping, "be", "lu", "de-nw")],
                             "serial_gap", second["new_key_id"])

    # The emergency path: nl's key is lost. The new key comes without its signature, needs
    # the threshold as well, and the lost key gets no grace at any peer.
    lost = prepare_rotation(net, "nl", key_lost=True)
    assert lost["kind"] == "replace"
    statement = copy_of(lost, tmp_path / "lost.keychange")
    cosign(net, statement, "lu")
    refused = run_cli("admin", "keys", "apply", str(statement), "--config",
                      config(net, "nl"), check=False)
    assert refused.returncode != 0 and "cosign_threshold" in refused.stderr
    cosign(net, statement, "de-nw")
    replaced = apply(net, "nl", statement)
    await asyncio.to_thread(everywhere, net, replaced["new_key_id"],
                            "every peer to take nl's replacement key")
    for peer in PEERS:
        rows = json.loads(run_cli("admin", "keys", "list", "--config", config(net, peer),
                                  "--json").stdout)
        row = next(r for r in rows if r["key_id"] == second["new_key_id"])
        assert row["state"] == "retired", (peer, row)
    for nid in NODES:
        run_cli("admin", "audit", "verify", "--config", config(net, nid))


async def test_a_node_does_not_switch_to_a_key_without_a_co_signed_change(
        make_network: type[Network]) -> None:
    """New key files certified by the CA but installed by hand (no `keys apply`): the
    running node keeps signing with its key, audits `key.change_refused`, and its peer
    keeps the key it holds."""
    net = make_network.create(node_ids=("nl", "be"))
    for nid in ("nl", "be"):
        net.start(nid)
    old = signing_key(net, "nl").key_id.hex()
    await asyncio.to_thread(wait_for, lambda: peer_key_of(net, "be", "nl") == old,
                            timeout=SLOW, what="be to know nl's key")
    reissue.rotate_signing(net.certs / "nl", "nl", ca_dir=net.certs, now=datetime.now(UTC))
    await asyncio.to_thread(wait_for, lambda: any(
        r.event == "key.change_refused" and r.actor == "nl" for r in audit_rows(net, "nl")),
        timeout=SLOW, what="nl to refuse the key no co-signed change introduces")
    assert peer_key_of(net, "be", "nl") == old
    assert not any(r.event == "key.rotated" for r in audit_rows(net, "nl"))
