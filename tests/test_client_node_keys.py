"""An officer's client believes a node's new key, or the revocation of a node key, only as a
co-signed key change from the keys it holds (issue 18, docs/protocol.md §19): the network CA
and one node's key together move nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from liaison_net.client.directory import Directory, verify_directory
from liaison_net.core import codec, crypto, key_change
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import EnrolmentRequest, issue_card
from liaison_net.core.key_change import KeyChange, Kind
from liaison_net.core.limits import DAY_MS
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.errors import Revoked
from liaison_net.pki import certificates, reissue

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NODES = ("nl", "be", "lu", "de-nw")


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = certificates.load_ca_certificate(certificates.init_network(root, now=NOW).ca_cert)
        self.nodes = {n: certificates.init_node(root, n, ca_dir=root, now=NOW) for n in NODES}

    def cert(self, node: str) -> bytes:
        return self.nodes[node].signing_cert.read_bytes()

    def key(self, node: str) -> crypto.SigningKeyPair:
        return crypto.signing_key_from_seed(self.nodes[node].signing_key.read_bytes())

    def certs(self) -> dict[str, bytes]:
        return {n: self.cert(n) for n in NODES}

    def held(self) -> dict[str, bytes]:
        return {n: self.key(n).public for n in NODES}

    def rotate(self, node: str) -> tuple[crypto.SigningKeyPair, bytes]:
        """What the CA alone can do: certify a new key for ``node`` (old key, old cert)."""
        old_key, old_cert = self.key(node), self.cert(node)
        reissue.rotate_signing(self.root / node, node, ca_dir=self.root, now=NOW)
        return old_key, old_cert


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def cosigned(raw: bytes, pki: Pki, *cosigners: str) -> bytes:
    for node in cosigners:
        raw = key_change.cosign(raw, node, pki.key(node))
    return raw


def rotation(pki: Pki, old: crypto.SigningKeyPair, *cosigners: str, serial: int = 1) -> bytes:
    change = KeyChange(Kind.ROTATE, "nl", old.key_id, pki.key("nl").public, serial, NOW_MS,
                       "scheduled rotation")
    return cosigned(key_change.propose(change, old), pki, *cosigners)


def revocation(pki: Pki, key_id: bytes, *cosigners: str, serial: int = 2) -> bytes:
    change = KeyChange(Kind.REVOKE, "nl", key_id, None, serial, NOW_MS, "key exposed")
    return cosigned(key_change.propose(change, pki.key("nl")), pki, *cosigners)


def directory(pki: Pki, *, cards: list[bytes] | None = None,
              revocations: list[bytes] | None = None, previous: list[bytes] | None = None,
              chains: dict[str, list[bytes]] | None = None,
              held: dict[str, bytes] | None = None,
              cosigners: frozenset[str] | None = None,
              certs: dict[str, bytes] | None = None) -> Directory:
    raw = codec.pack({"node_certs": certs or pki.certs(), "cards": cards or [],
                      "previous_cards": [],
                      "previous_node_certs": previous or [], "revocations": revocations or [],
                      "key_changes": chains or {}})
    return verify_directory(raw, pki.ca, now=NOW, held=held, cosigners=cosigners)


def card(pki: Pki, officer: str) -> bytes:
    request = EnrolmentRequest(officer, "Name", "role", crypto.generate_signing_key().public,
                               crypto.generate_encryption_key().public, Almanac())
    node = officer.split("/")[0]
    return issue_card(request, node_id=node, node_key=pki.key(node), version=1, now=NOW_MS,
                      valid_for_ms=DAY_MS)


def test_first_contact_takes_the_certified_keys_and_holds_them(pki: Pki) -> None:
    d = directory(pki)
    assert d.warnings == [] and d.node_keys == pki.held() and d.held == pki.held()
    assert d.cosigners == frozenset(NODES)


def test_a_co_signed_rotation_moves_the_held_key(pki: Pki) -> None:
    held = pki.held()
    old, old_cert = pki.rotate("nl")
    d = directory(pki, cards=[card(pki, "nl/jdevries")], previous=[old_cert],
                  chains={"nl": [rotation(pki, old, "be", "lu")]}, held=held)
    assert d.warnings == []
    assert d.node_keys["nl"] == d.held["nl"] == pki.key("nl").public
    assert set(d.cards) == {"nl/jdevries"}
    assert d.lookup()(old.key_id) is not None  # evidence signed before still verifies
    again = directory(pki, cards=[card(pki, "nl/jdevries")], previous=[old_cert],
                      chains={"nl": [rotation(pki, old, "be", "lu")]}, held=d.held)
    assert again.warnings == [] and again.lookup()(old.key_id) is not None  # still in grace


@pytest.mark.parametrize("cosigners", [(), ("be",), ("be", "be"), ("nl", "be")])
def test_a_certificate_without_the_threshold_does_not_move_the_held_key(
        pki: Pki, cosigners: tuple[str, ...]) -> None:
    """The CA certifies a new nl key (an attacker holding the CA's key and nl's): without
    two co-signatures of other national nodes the client keeps nl's held key, says so, and
    what the new key signs does not verify."""
    held = pki.held()
    old, _ = pki.rotate("nl")
    change = KeyChange(Kind.ROTATE, "nl", old.key_id, pki.key("nl").public, 1, NOW_MS, "x")
    raw = key_change.propose(change, old)
    for node in cosigners:
        raw = key_change.cosign(raw, node, pki.key(node)) if node != "nl" else raw
    chains = {"nl": [raw]} if cosigners else {}
    d = directory(pki, cards=[card(pki, "nl/jdevries")], chains=chains, held=held)
    assert d.node_keys["nl"] == d.held["nl"] == old.public
    assert d.cards == {}
    assert any(w.startswith("kept the key this client holds for node nl") for w in d.warnings)
    assert d.lookup()(pki.key("nl").key_id) is None


def test_a_previous_certificate_of_a_key_never_held_is_dropped(pki: Pki) -> None:
    held = pki.held()
    _, _ = pki.rotate("nl")
    planted, planted_cert = pki.rotate("nl")  # certified by the CA, never nl's to the client
    d = directory(pki, previous=[planted_cert], held=held)
    assert d.lookup()(planted.key_id) is None
    assert any("neither held by this client" in w for w in d.warnings)


def test_a_node_alone_revocation_is_refused_with_a_warning(pki: Pki) -> None:
    held = pki.held()
    old, _ = pki.rotate("nl")
    chain = [rotation(pki, old, "be", "lu")]
    alone = sign_revocation(Revocation(Subject.NODE, "nl", old.key_id, "key exposed",
                                       serial=NOW_MS, effective=NOW_MS, authority="nl"),
                            pki.key("nl"))
    d = directory(pki, revocations=[alone], chains={"nl": chain}, held=held)
    assert d.revoked == {}
    assert d.warnings == ["dropped revocation #0: a revocation of a key of node nl signed by "
                          "the node alone is not believed: it needs the co-signatures of the "
                          "other national nodes (docs/protocol.md §19)"]


@pytest.mark.parametrize("cosigners,believed", [(("be", "lu"), True), (("be",), False)])
def test_a_co_signed_node_key_revocation_is_believed_with_the_threshold(
        pki: Pki, cosigners: tuple[str, ...], believed: bool) -> None:
    held = pki.held()
    old, old_cert = pki.rotate("nl")
    statement = revocation(pki, old.key_id, *cosigners)
    d = directory(pki, revocations=[statement], previous=[old_cert],
                  chains={"nl": [rotation(pki, old, "be", "lu")]}, held=held)
    assert (old.key_id in d.revoked) is believed
    if believed:
        assert d.warnings == []
        with pytest.raises(Revoked):
            d.lookup()(old.key_id)
    else:
        assert d.warnings[0].startswith("dropped revocation #0: key change of nl is co-signed")
        assert d.lookup()(old.key_id) is not None


def test_an_officer_revocation_signed_by_the_home_node_is_unchanged(pki: Pki) -> None:
    request_key = crypto.generate_signing_key()
    request = EnrolmentRequest("nl/jdevries", "Name", "role", request_key.public,
                               crypto.generate_encryption_key().public, Almanac())
    raw = issue_card(request, node_id="nl", node_key=pki.key("nl"), version=1, now=NOW_MS,
                     valid_for_ms=DAY_MS)
    statement = sign_revocation(Revocation(Subject.OFFICER, "nl/jdevries", request_key.key_id,
                                           "lost", serial=NOW_MS, effective=NOW_MS,
                                           authority="nl"), pki.key("nl"))
    d = directory(pki, cards=[raw], revocations=[statement], held=pki.held())
    assert d.warnings == [] and request_key.key_id in d.revoked


def test_a_directory_from_a_node_without_key_changes_still_verifies(pki: Pki) -> None:
    raw = codec.pack({"node_certs": pki.certs(), "cards": [], "previous_cards": [],
                      "previous_node_certs": [], "revocations": []})
    assert verify_directory(raw, pki.ca, now=NOW, held=pki.held()).warnings == []


def test_a_key_declared_lost_keeps_no_grace_certificate(pki: Pki) -> None:
    """After a co-signed replacement (key lost), the lost key's certificate no longer
    vouches for anything at the client: the thief holds that key."""
    held = pki.held()
    lost, lost_cert = pki.rotate("nl")
    change = KeyChange(Kind.REPLACE, "nl", lost.key_id, pki.key("nl").public, 1, NOW_MS,
                       "signing key lost")
    chain = [cosigned(key_change.propose(change, None), pki, "be", "de-nw")]
    d = directory(pki, previous=[lost_cert], chains={"nl": chain}, held=held)
    assert d.node_keys["nl"] == pki.key("nl").public
    assert d.lookup()(lost.key_id) is None
    again = directory(pki, previous=[lost_cert], chains={"nl": chain}, held=d.held)
    assert again.lookup()(lost.key_id) is None


def test_nodes_met_after_the_first_directory_never_co_sign(pki: Pki, tmp_path: Path) -> None:
    """Whoever serves the directory (and holds the CA) lists two invented nodes: the client
    takes their keys (first contact) but never counts their co-signatures, now or later."""
    first = directory(pki, certs={n: pki.cert(n) for n in ("nl", "be")})
    assert first.cosigners == frozenset({"nl", "be"})
    invented = {n: certificates.init_node(tmp_path / "x", n, ca_dir=pki.root, now=NOW)
                for n in ("fr", "es")}
    old, _ = pki.rotate("nl")
    certs = {**pki.certs(), **{n: p.signing_cert.read_bytes() for n, p in invented.items()}}
    change = KeyChange(Kind.ROTATE, "nl", old.key_id, pki.key("nl").public, 1, NOW_MS, "x")
    raw = key_change.propose(change, old)
    for n, p in invented.items():
        raw = key_change.cosign(raw, n, crypto.signing_key_from_seed(
            p.signing_key.read_bytes()))
    for _ in range(2):  # the invented nodes are held after the first fetch: still no count
        d = directory(pki, certs=certs, chains={"nl": [raw]}, held=first.held,
                      cosigners=first.cosigners)
        assert d.node_keys["nl"] == old.public and d.cosigners == first.cosigners
        assert {"fr", "es"} <= set(d.held)
        assert any(w.startswith("kept the key this client holds for node nl")
                   for w in d.warnings)
        first = d
