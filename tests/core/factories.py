"""Small builders shared by the tests: keys, the default tag and sealed envelopes.

The core tests use them at the fixed ``NOW``; the integration tests build their tags here
too (``make_tag(now=...)`` at the wall clock), so the default tag is written once."""

from __future__ import annotations

from dataclasses import dataclass, field

from liaison_net.core import crypto, sealing
from liaison_net.core.almanac import Almanac
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.identity import EnrolmentRequest, OfficerCard, issue_card, verify_card
from liaison_net.core.limits import DAY_MS, HOUR_MS
from liaison_net.core.ownership import (
    Evaluation,
    Handling,
    InformationAccuracy,
    Owner,
    OwnershipTag,
    PermittedAction,
    SourceReliability,
    Tlp,
)

NOW = 1_795_000_000_000  # a fixed "now" in ms (2026-11-18); the core never reads the clock


@dataclass(eq=False)
class Officer:
    id: str
    signing: crypto.SigningKeyPair = field(default_factory=crypto.generate_signing_key)
    encryption: crypto.EncryptionKeyPair = field(default_factory=crypto.generate_encryption_key)

    @property
    def recipient(self) -> sealing.RecipientKey:
        return sealing.RecipientKey(self.id, self.encryption.public)

    @property
    def signer(self) -> sealing.SignerKey:
        return sealing.SignerKey(self.id, self.signing.public)


def make_tag(*, now: int = NOW, **overrides: object) -> OwnershipTag:
    """The default test tag: owned by nl's CID Limburg, H0, TLP:AMBER, evaluated B2, shared
    in the Benelux, every action permitted, retained 90 days from ``now``; ``overrides``
    change single fields. Validated, so a test cannot start from a tag the core refuses."""
    values: dict[str, object] = dict(
        owner=Owner("nl", "cid-limburg"),
        handling=Handling.H0,
        tlp=Tlp.AMBER,
        evaluation=Evaluation(SourceReliability.B, InformationAccuracy.KNOWN_TO_SOURCE),
        share_with=frozenset({"nl", "be", "lu"}),
        permitted_actions=frozenset(PermittedAction),
        purpose="cross-border drug trafficking investigation",
        retain_until=now + 90 * DAY_MS,
    )
    values.update(overrides)
    return OwnershipTag(**values).validate()  # type: ignore[arg-type]


def lookup_for(*officers: Officer) -> sealing.KeyLookup:
    keys = {o.signing.key_id: o.signer for o in officers}
    return keys.get


def seal_from(author: Officer, recipients: list[Officer], plaintext: bytes = b"alert",
              **kw: object) -> Envelope:
    args: dict[str, object] = dict(
        sender=author.id,
        sender_key=author.signing,
        recipients=[r.recipient for r in recipients],
        tag=make_tag(),
        plaintext=plaintext,
        now=NOW,
        expires=NOW + 8 * HOUR_MS,
        kind=Kind.MESSAGE,
        precedence=Precedence.PRIORITY,
    )
    args.update(kw)
    return sealing.seal(**args)  # type: ignore[arg-type]


def issued_card(officer: Officer, node: str, node_key: crypto.SigningKeyPair, *,
                version: int = 1) -> tuple[OfficerCard, bytes]:
    """``officer``'s card as ``node`` issues it under ``node_key`` (valid a day from NOW),
    verified as a receiving node would: (card, its bytes) for ``put_card``."""
    raw = issue_card(EnrolmentRequest(officer.id, "N", "r", officer.signing.public,
                                      officer.encryption.public, Almanac()),
                     node_id=node, node_key=node_key, version=version, now=NOW,
                     valid_for_ms=DAY_MS)
    return verify_card(raw, node_public=node_key.public, node_id=node, now=None), raw
