"""The client believes only the directory entries the network CA vouches for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from liaison_net import errors
from liaison_net.client.directory import verify_directory
from liaison_net.core import codec, crypto, key_change
from liaison_net.core.almanac import Almanac
from liaison_net.core.identity import EnrolmentRequest, issue_card
from liaison_net.core.limits import DAY_MS
from liaison_net.core.rotation import Revocation, Subject, sign_revocation
from liaison_net.pki import certificates, reissue

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


class Pki:
    def __init__(self, root: Path) -> None:
        self.ca = certificates.load_ca_certificate(certificates.init_network(root, now=NOW).ca_cert)
        self.nodes = {n: certificates.init_node(root, n, ca_dir=root, now=NOW)
                      for n in ("nl", "be")}

    def cert(self, node: str) -> bytes:
        return self.nodes[node].signing_cert.read_bytes()

    def key(self, node: str) -> crypto.SigningKeyPair:
        return crypto.signing_key_from_seed(self.nodes[node].signing_key.read_bytes())


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _card(network: Pki, officer: str, *, signer: str | None = None, version: int = 1,
          now: int = NOW_MS, days: int = 365,
          almanac: Almanac | None = None) -> tuple[bytes, crypto.SigningKeyPair]:
    key = crypto.generate_signing_key()
    request = EnrolmentRequest(officer, "Name", "role", key.public,
                               crypto.generate_encryption_key().public, almanac or Almanac())
    node = signer or officer.split("/")[0]
    # issue_card names the officer's own node; signing with another node's key forges one.
    raw = issue_card(request, node_id=officer.split("/")[0], node_key=network.key(node),
                     version=version, now=now, valid_for_ms=days * DAY_MS)
    return raw, key


def _directory(node_certs: dict[str, bytes], cards: list[bytes],
               revocations: list[bytes] | None = None,
               previous_node_certs: list[bytes] | None = None) -> bytes:
    return codec.pack({"node_certs": node_certs, "cards": cards, "previous_cards": [],
                       "previous_node_certs": previous_node_certs or [],
                       "revocations": revocations or []})


def test_verified_cards_are_kept_and_give_a_signer_lookup(network: Pki) -> None:
    jan, jan_key = _card(network, "nl/jdevries")
    marie, _ = _card(network, "be/mpeeters")
    d = verify_directory(_directory({"nl": network.cert("nl"), "be": network.cert("be")},
                                    [jan, marie]), network.ca, now=NOW)
    assert d.warnings == []
    assert set(d.cards) == {"nl/jdevries", "be/mpeeters"}
    signer = d.lookup()(jan_key.key_id)
    assert signer is not None and signer.principal == "nl/jdevries"
    assert d.recipient("be/mpeeters", now=NOW_MS).officer == "be/mpeeters"


def test_a_node_cannot_vouch_for_another_nodes_officer(network: Pki) -> None:
    forged, _ = _card(network, "be/mpeeters", signer="nl")
    d = verify_directory(_directory({"nl": network.cert("nl"), "be": network.cert("be")},
                                    [forged]), network.ca, now=NOW)
    assert d.cards == {}
    assert d.warnings == ["dropped card #0: card for be/mpeeters is not signed by its home node"]


def test_a_certificate_listed_under_another_node_is_dropped(network: Pki) -> None:
    marie, _ = _card(network, "be/mpeeters")
    d = verify_directory(_directory({"be": network.cert("nl")}, [marie]), network.ca, now=NOW)
    assert d.node_keys == {} and d.cards == {}
    assert "certificate is for node 'nl'" in d.warnings[0]


def test_a_certificate_from_another_ca_is_dropped(network: Pki, tmp_path: Path) -> None:
    other = Pki(tmp_path)
    d = verify_directory(_directory({"nl": other.cert("nl"), "be": network.cert("be")}, []),
                         network.ca, now=NOW)
    assert set(d.node_keys) == {"be"}
    assert "not" in d.warnings[0] and "'nl'" in d.warnings[0]


def test_the_newest_card_version_wins(network: Pki) -> None:
    old, _ = _card(network, "nl/jdevries", version=1)
    new, new_key = _card(network, "nl/jdevries", version=2)
    d = verify_directory(_directory({"nl": network.cert("nl")}, [new, old]), network.ca,
                         now=NOW)
    assert d.cards["nl/jdevries"].version == 2
    assert d.cards["nl/jdevries"].signing_public == new_key.public


def test_an_expired_card_is_kept_for_reading_but_not_sealed_for(network: Pki) -> None:
    raw, key = _card(network, "nl/jdevries", now=NOW_MS - 10 * DAY_MS, days=1)
    d = verify_directory(_directory({"nl": network.cert("nl")}, [raw]), network.ca, now=NOW)
    assert "has expired" in d.warnings[0]
    assert d.lookup()(key.key_id) is not None  # an old envelope still verifies
    with pytest.raises(errors.BadTimestamp):
        d.recipient("nl/jdevries", now=NOW_MS)


def test_unknown_recipient_is_named(network: Pki) -> None:
    d = verify_directory(_directory({"nl": network.cert("nl")}, []), network.ca, now=NOW)
    with pytest.raises(errors.NotFound, match="unknown recipient be/nobody"):
        d.recipient("be/nobody", now=NOW_MS)


def test_node_certificates_are_checked_at_now(network: Pki) -> None:
    later = NOW + timedelta(days=400)  # past the node certificates' validity
    d = verify_directory(_directory({"nl": network.cert("nl")}, []), network.ca, now=later)
    assert d.node_keys == {} and "expired" in d.warnings[0]


@pytest.mark.parametrize("value", [
    {"node_certs": {}, "cards": [], "previous_cards": [], "previous_node_certs": [],
     "revocations": [], "extra": 1},
    {"node_certs": [], "cards": [], "previous_cards": [], "previous_node_certs": [],
     "revocations": []},
    {"node_certs": {}, "cards": [], "previous_cards": [], "previous_node_certs": [],
     "revocations": {}},
    {"node_certs": {}, "cards": [], "previous_cards": [], "revocations": []},
    {"node_certs": {}},
])
def test_a_malformed_directory_is_refused(network: Pki, value: object) -> None:
    with pytest.raises(errors.Malformed):
        verify_directory(codec.pack(value), network.ca, now=NOW)


def test_garbage_entries_are_dropped_not_fatal(network: Pki) -> None:
    jan, _ = _card(network, "nl/jdevries")
    d = verify_directory(_directory({"nl": network.cert("nl"), "xx": b"junk"},
                                    [b"junk", jan]), network.ca, now=NOW)
    assert set(d.cards) == {"nl/jdevries"}
    assert len(d.warnings) == 2


# --- rotation and revocation (issue 15) ----------------------------------------------------

def _revoke(key: crypto.SigningKeyPair, subject: Subject, principal: str, key_id: bytes,
            authority: str) -> bytes:
    return sign_revocation(Revocation(subject, principal, key_id, "key exposed", serial=NOW_MS,
                                      effective=NOW_MS, authority=authority), key)


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[Pki, bytes, crypto.SigningKeyPair]:
    """A network whose node nl rotated its signing key: (pki, old cert, old key)."""
    pki = Pki(tmp_path)
    old_cert, old_key = pki.cert("nl"), pki.key("nl")
    reissue.rotate_signing(tmp_path / "nl", "nl", ca_dir=tmp_path, now=NOW)
    assert pki.key("nl").key_id != old_key.key_id
    return pki, old_cert, old_key


def _cosigned_revoke(pki: Pki, key_id: bytes) -> bytes:
    """A node key revocation as clients believe it (protocol §19): a key change signed by
    the node's current key and co-signed by the other national node (be: two nodes here)."""
    raw = key_change.propose(key_change.KeyChange(key_change.Kind.REVOKE, "nl", key_id, None,
                                                  1, NOW_MS, "key exposed"), pki.key("nl"))
    return key_change.cosign(raw, "be", pki.key("be"))


def test_a_node_revoking_its_replaced_key_is_believed(
        rotated: tuple[Pki, bytes, crypto.SigningKeyPair]) -> None:
    """The old node key is in no current certificate: the revocation, signed by the node's
    current key and co-signed, is kept (no warning) and what the old key signs is refused
    as revoked."""
    pki, _, old_key = rotated
    statement = _cosigned_revoke(pki, old_key.key_id)
    d = verify_directory(_directory({"nl": pki.cert("nl"), "be": pki.cert("be")}, [],
                                    [statement]), pki.ca, now=NOW)
    assert d.warnings == []
    assert old_key.key_id in d.revoked
    with pytest.raises(errors.Revoked):
        d.lookup()(old_key.key_id)


def test_a_node_revocation_naming_another_principals_key_is_dropped(network: Pki) -> None:
    jan, _ = _card(network, "nl/jdevries")
    marie, marie_key = _card(network, "be/mpeeters")
    lies = [_revoke(network.key("nl"), Subject.NODE, "nl", marie_key.key_id, "nl"),
            _revoke(network.key("nl"), Subject.NODE, "nl", network.key("be").key_id, "nl")]
    d = verify_directory(_directory({"nl": network.cert("nl"), "be": network.cert("be")},
                                    [jan, marie], lies), network.ca, now=NOW)
    assert d.revoked == {}
    assert [w.split(":")[0] for w in d.warnings] == ["dropped revocation #0",
                                                     "dropped revocation #1"]
    assert d.lookup()(marie_key.key_id) is not None


def test_cards_still_signed_by_a_replaced_node_key_verify_in_its_grace(
        rotated: tuple[Pki, bytes, crypto.SigningKeyPair]) -> None:
    """A peer's re-issued cards follow its new certificate: meanwhile the old ones hold."""
    pki, old_cert, old_key = rotated
    request = EnrolmentRequest("nl/jdevries", "Name", "role", crypto.generate_signing_key().public,
                               crypto.generate_encryption_key().public, Almanac())
    raw = issue_card(request, node_id="nl", node_key=old_key, version=1, now=NOW_MS,
                     valid_for_ms=DAY_MS)
    without = verify_directory(_directory({"nl": pki.cert("nl")}, [raw]), pki.ca, now=NOW)
    assert without.cards == {}
    d = verify_directory(_directory({"nl": pki.cert("nl")}, [raw], [], [old_cert]), pki.ca,
                         now=NOW)
    assert set(d.cards) == {"nl/jdevries"} and d.warnings == []
    assert d.lookup()(old_key.key_id) is not None  # its evidence verifies in the grace too
    statement = _cosigned_revoke(pki, old_key.key_id)
    revoked = verify_directory(_directory({"nl": pki.cert("nl"), "be": pki.cert("be")},
                                          [raw], [statement],
                                          [old_cert]), pki.ca, now=NOW)
    assert revoked.cards == {}
    assert "signed by revoked node key" in revoked.warnings[0]
    with pytest.raises(errors.Revoked):
        revoked.lookup()(old_key.key_id)


def test_a_revoked_officer_is_marked_and_never_sealed_for(network: Pki) -> None:
    jan, jan_key = _card(network, "nl/jdevries")
    statement = _revoke(network.key("nl"), Subject.OFFICER, "nl/jdevries", jan_key.key_id, "nl")
    d = verify_directory(_directory({"nl": network.cert("nl")}, [jan], [statement]),
                         network.ca, now=NOW)
    assert d.warnings == []
    revocation = d.revocation_of("nl/jdevries", now=NOW_MS)
    assert revocation is not None and revocation.reason == "key exposed"
    with pytest.raises(errors.Revoked, match="recipient nl/jdevries is revoked"):
        d.recipient("nl/jdevries", now=NOW_MS)
    assert d.search(now=NOW_MS) == []
