"""Issue 14: a certified peer launders tags and forges node notices; every honest party
refuses, each with its own code and an audit row, and the node stays up.

The attacker holds LU's real node certificate and signing key and a real LU officer's
keystore (lu/cschmit). NL's node refuses what LU relays (the destination check), NL's node
refuses what its own officer submits (the origin check), and NL's officer's client refuses
what a compromised NL node might plant in its inbox (the client check): all three run the
same core function, ``tagflow.check``.
"""

from __future__ import annotations

import sqlite3

import pytest

from liaison_net.client.directory import Directory
from liaison_net.core import codec, content, crypto, sealing
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.ids import node_principal
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.ownership import Handling, Owner, OwnershipTag, Tlp
from liaison_net.core.retention import make_skeleton
from liaison_net.errors import SignerNotAllowed
from liaison_net.pki.certificates import SIGNING_KEY_FILE, node_hostname
from tests.integration.network import Network, audit_rows, healthz, https, peer_tls, run_cli
from tests.integration.officers import PASSPHRASE, OfficerAgent, benelux_tag, enrol, now_ms
from tests.integration.test_first_alert import directory_with, inbox_ids

pytestmark = pytest.mark.slow
ENV = {"LIAISON_PASSPHRASE": PASSPHRASE.decode()}
EVERYWHERE = frozenset({"be", "nl", "lu", "de-nw"})


def cli(agent: OfficerAgent, *args: str) -> tuple[int, str]:
    proc = run_cli(*args, "--keystore", str(agent.path), env=ENV, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def refusals(net: Network, nid: str, code: str) -> int:
    return sum(1 for r in audit_rows(net, nid)
               if r.event == "envelope.refused" and r.detail.get("code") == code)


async def relay_as_lu(net: Network, envelope: bytes) -> list[str]:
    """LU's real certificate posts one envelope to NL; NL's answer for it."""
    status, body = await https(
        net.nodes["nl"].federation_port, peer_tls(net, "lu"), node_hostname("nl"), "POST",
        "/fed/v1/transactions",
        data=codec.pack({"origin": "lu", "txn": crypto.random_bytes(16),
                         "envelopes": [envelope]}),
        headers={"Content-Type": "application/x-msgpack"})
    assert status == 200, body  # a refusal per envelope, never a 500
    return list(codec.unpack(body, what="answer", max_bytes=4096)["results"][0][:2])


def plant(net: Network, officer: str, envelope: Envelope) -> None:
    """What a compromised NL node could do: put an envelope straight into an inbox."""
    h = envelope.header
    with sqlite3.connect(net.database("nl")) as db:
        db.execute("INSERT INTO envelopes (id, raw, sender, kind, precedence, created, expires,"
                   " retain_until, received, ref) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
                   (h.id, envelope.to_bytes(), h.sender, h.kind.value, h.created, h.expires,
                    h.tag.retain_until, now_ms(), h.ref))
        db.execute("INSERT INTO inbox (officer, envelope_id, relayed) VALUES (?, ?, ?)",
                   (officer, h.id, now_ms()))


def in_inbox(net: Network, envelope: Envelope) -> bool:
    with sqlite3.connect(net.database("nl")) as db:
        return db.execute("SELECT COUNT(*) FROM inbox WHERE envelope_id = ?",
                          (envelope.id,)).fetchone() != (0,)


def assert_up(net: Network) -> None:
    proc = net.nodes["nl"].proc
    assert proc is not None and proc.poll() is None
    assert healthz(net, "nl")["status"] == "ok"


def relaxed_tag(original: OwnershipTag) -> OwnershipTag:
    """The owner's name kept, everything else loosened: H0, CLEAR, shared with DE-NW."""
    return OwnershipTag(**{**original.__dict__, "handling": Handling.H0, "tlp": Tlp.CLEAR,
                           "share_with": EVERYWHERE}).validate()


def notice(signer: str, key: crypto.SigningKeyPair, to: OfficerAgent, directory: Directory,
           fields: dict[str, object]) -> Envelope:
    now = now_ms()
    node = signer.split("/")[0]
    tag = OwnershipTag(**{**benelux_tag(node).__dict__, "owner": Owner(node, "node"),
                          "share_with": frozenset({node, "nl"})}).validate()
    return sealing.seal(sender=signer, sender_key=key,
                        recipients=[directory.recipient(to.id, now=now)],
                        tag=tag, plaintext=codec.pack({"v": 1, **fields}), now=now,
                        expires=now + HOUR_MS, kind=Kind.NOTICE, precedence=Precedence.PRIORITY)


async def test_a_compromised_peer_cannot_launder_tags_or_forge_notices(
        make_network: type[Network]) -> None:
    net = make_network.create(node_ids=("nl", "lu", "de-nw"))
    jan, claude = enrol(net, "nl/jdevries"), enrol(net, "lu/cschmit")
    klaus = enrol(net, "de-nw/kmueller")
    for nid in ("nl", "lu", "de-nw"):
        net.start(nid)
    lu_key = crypto.signing_key_from_seed((net.certs / "lu" / SIGNING_KEY_FILE).read_bytes())
    async with jan.session() as node:
        nl_dir = await directory_with(node, claude.id, klaus.id)
    async with claude.session() as node:
        lu_dir = await directory_with(node, jan.id)

    # NL's Benelux-only H2 alert reaches LU, as it should.
    alert_tag = benelux_tag("nl", handling=Handling.H2)
    original = jan.seal(nl_dir, [claude.id], content.encode(content.Content(
        subject="Benelux only", text="H2: not to be disseminated")), tag=alert_tag)
    async with jan.session() as node:
        await node.submit(original.to_bytes())
    async with claude.session() as node:
        await inbox_ids(node, 1)

    # 1. An LU officer's envelope under a tag owned by BE, relayed by LU.
    now = now_ms()
    be_owned = sealing.seal(
        sender=claude.id, sender_key=claude.keystore.signing,
        recipients=[lu_dir.recipient(jan.id, now=now)],
        tag=relaxed_tag(benelux_tag("be")), plaintext=b"be's words", now=now,
        expires=now + HOUR_MS, kind=Kind.MESSAGE)
    assert await relay_as_lu(net, be_owned.to_bytes()) == ["refused", "policy.owner_not_signer"]
    assert refusals(net, "nl", "policy.owner_not_signer") == 1

    # 2. LU "forwards" NL's alert back to NL under a relaxed tag, without consent.
    def laundered(original_field: bytes | None) -> Envelope:
        now = now_ms()
        return sealing.seal(
            sender=claude.id, sender_key=claude.keystore.signing,
            recipients=[lu_dir.recipient(jan.id, now=now)], tag=relaxed_tag(alert_tag),
            plaintext=content.encode(content.Content(subject="Fwd", text="now CLEAR")),
            now=now, expires=now + HOUR_MS, kind=Kind.MESSAGE, ref=original.id,
            original=original_field)

    bare = laundered(None)
    assert await relay_as_lu(net, bare.to_bytes()) == ["refused", "policy.original_missing"]
    carried = laundered(make_skeleton(original.to_bytes()))
    assert await relay_as_lu(net, carried.to_bytes()) == [
        "refused", "policy.relax_by_non_owner"]
    for code in ("policy.original_missing", "policy.relax_by_non_owner"):
        assert refusals(net, "nl", code) == 1
    assert not any(in_inbox(net, e) for e in (be_owned, bare, carried))
    assert_up(net)

    # 3. Were NL's node compromised too, NL's officer's client refuses to show it, and to
    # forward it on to DE-NW.
    plant(net, jan.id, carried)
    code, out = cli(jan, "read", carried.header.id_text)
    assert code == 2 and "policy.relax_by_non_owner" in out, out
    code, out = cli(jan, "forward", carried.header.id_text, "--to", klaus.id)
    assert code == 2 and "policy.relax_by_non_owner" in out, out

    # 4. Notices are the nodes' word: an officer submitting one is refused at the origin...
    jan_notice = notice(jan.id, jan.keystore.signing, jan, nl_dir,
                        {"type": "signal-ack", "node": "nl", "by": "nl/desk", "at": now_ms()})
    with pytest.raises(SignerNotAllowed):
        async with jan.session() as node:
            await node.submit(jan_notice.to_bytes())
    assert refusals(net, "nl", "signer_not_allowed") == 1
    # ...an LU officer's relayed by LU is refused at the destination...
    claude_notice = notice(claude.id, claude.keystore.signing, jan, lu_dir,
                           {"type": "signal-ack", "node": "lu", "by": "lu/desk",
                            "at": now_ms()})
    assert await relay_as_lu(net, claude_notice.to_bytes()) == ["refused",
                                                               "signer_not_allowed"]
    assert refusals(net, "nl", "signer_not_allowed") == 2
    # ...and the client shows neither an officer's notice planted in the inbox, nor one LU's
    # node signs in the name of another node's desk (which NL, rightly, delivers).
    plant(net, jan.id, claude_notice)
    code, out = cli(jan, "read", claude_notice.header.id_text)
    assert code == 2 and "signer_not_allowed" in out, out
    spoofed_ack = notice(node_principal("lu"), lu_key, jan, lu_dir,
                         {"type": "signal-ack", "signal": original.id, "node": "be",
                          "by": "be/desk", "at": now_ms()})
    assert await relay_as_lu(net, spoofed_ack.to_bytes()) == ["accepted", ""]
    code, out = cli(jan, "read", spoofed_ack.header.id_text)
    assert code == 2 and "signer_not_allowed" in out, out
    assert_up(net)
