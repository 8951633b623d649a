"""Valid seed inputs, built with the real core: signed envelopes, transactions, signals, tags.

A fuzzer started from valid inputs mutates its way into the deep branches of a strict
decoder at once, instead of spending its budget rediscovering the outer framing. Seeds are
built programmatically (not checked in), so they follow the wire format as the code
changes; the tests check that every seed is valid.

Each harness takes its input in a small framing of its own: a mode byte, then the bytes for
that mode. The builders for those framings live here, next to the seeds that use them.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from liaison_net.core import codec, crypto, sealing
from liaison_net.core.envelope import Envelope, Kind, Precedence, Urgency
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
from liaison_net.core.retention import make_skeleton
from liaison_net.core.signals import (
    Attachment,
    Category,
    Confidence,
    Pseudonym,
    Severity,
    SignalAnnex,
    SignalPayload,
    desk_of,
)

NOW = 1_795_000_000_000  # a fixed "now" in ms, as in the core tests: the core never reads a clock
SENDER = "nl/jdevries"
NODES = ("nl", "be", "lu", "de-nw")

# Input modes of the harnesses (first byte of an input, taken modulo the number of modes).
ENVELOPE_RAW = 0  # the rest is a wire frame, verified as a node does
ENVELOPE_SIGNED = 1  # u16 header length, header bytes, body bytes: signed, then verified
ENVELOPE_DIRECT = 2  # the decoders called directly: count byte, then header / body bytes
ENVELOPE_MODES = 3
SIGNAL_PAYLOAD = 0
SIGNAL_ANNEX = 1
SIGNAL_MODES = 2
POLICY_BUILT = 0  # the tag is built from the input with a FuzzedDataProvider
POLICY_WIRE = 1  # u16 length, tag wire bytes; the rest drives the requests
POLICY_MODES = 2


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"liaison-net/fuzz/" + label.encode()).digest()


#: The one signer of every seed envelope; the harness knows its key (``lookup``).
SIGNER = crypto.signing_key_from_seed(_seed("signer"))
SIGNER_KEY = sealing.SignerKey(SENDER, SIGNER.public)
_RECIPIENT_IDS = ("nl/desk", "be/jpeeters", "lu/mschmit", "be/desk", "lu/desk")
RECIPIENTS = {
    officer: crypto.encryption_key_from_secret(_seed("recipient " + officer))
    for officer in _RECIPIENT_IDS
}


def lookup(key_id: bytes) -> sealing.SignerKey | None:
    """The key lookup of a node that knows the seed signer and nobody else."""
    return SIGNER_KEY if key_id == SIGNER.key_id else None


def tag(**overrides: object) -> OwnershipTag:
    """A valid tag owned by nl, shared in the Benelux; overrides change single fields."""
    values: dict[str, object] = dict(
        owner=Owner("nl", "cid-limburg"),
        handling=Handling.H0,
        tlp=Tlp.AMBER,
        evaluation=Evaluation(SourceReliability.B, InformationAccuracy.KNOWN_TO_SOURCE),
        share_with=frozenset({"nl", "be", "lu"}),
        permitted_actions=frozenset(PermittedAction),
        purpose="cross-border drug trafficking investigation",
        retain_until=NOW + 90 * DAY_MS,
    )
    values.update(overrides)
    return OwnershipTag(**values).validate()  # type: ignore[arg-type]


def sample_tags() -> dict[str, OwnershipTag]:
    """One tag per handling code and TLP label (with conditions/community where required)."""
    out: dict[str, OwnershipTag] = {}
    for handling in Handling:
        for tlp in Tlp:
            out[f"{handling.value}-{tlp.value}"] = tag(
                handling=handling,
                tlp=tlp,
                conditions="only for case 2026/117; ask before any use" if handling is
                Handling.H3 else "",
                community="benelux-ct-desks" if tlp is Tlp.GREEN else "",
                permitted_actions=frozenset({PermittedAction.FORWARD}) if tlp is Tlp.AMBER
                else frozenset(PermittedAction),
            )
    out["H2-RED-nl-only"] = tag(handling=Handling.H2, tlp=Tlp.RED, share_with=frozenset({"nl"}),
                                permitted_actions=frozenset())
    out["H0-CLEAR-all"] = tag(tlp=Tlp.CLEAR, share_with=frozenset(NODES),
                              evaluation=Evaluation(SourceReliability.X,
                                                    InformationAccuracy.NOT_KNOWN))
    return out


def _seal(to: tuple[str, ...], **kw: object) -> Envelope:
    args: dict[str, object] = dict(
        sender=SENDER,
        sender_key=SIGNER,
        recipients=[sealing.RecipientKey(o, RECIPIENTS[o].public) for o in to],
        tag=tag(),
        plaintext=b"alert: white van NL-12-AB seen at the border crossing",
        now=NOW,
        expires=NOW + 8 * HOUR_MS,
        kind=Kind.MESSAGE,
        precedence=Precedence.PRIORITY,
    )
    args.update(kw)
    return sealing.seal(**args)  # type: ignore[arg-type]


def sample_payloads() -> dict[str, SignalPayload]:
    """Signal payloads over every category, severity and confidence."""
    out: dict[str, SignalPayload] = {}
    confidences = list(Confidence)
    severities = list(Severity)
    for i, category in enumerate(Category):
        out[category.name.lower()] = SignalPayload(
            category=category,
            severity=severities[i % len(severities)],
            confidence=confidences[i % len(confidences)],
            region=("NL-LI", "BE-VLI", "LU", "BE-BRU")[i % 4],
            valid_from=NOW,
            valid_until=NOW + (i + 1) * DAY_MS,
            text=f"observed indicator {i}: subject seen at the meeting point\nsee attachment",
            attachments=(Attachment("photo.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(i)),)
            if i % 3 == 0 else (),
        ).validate()
    return out


def sample_annexes() -> dict[str, SignalAnnex]:
    """Header annexes with zero, one and two (rotation) pseudonyms, at every severity."""
    out: dict[str, SignalAnnex] = {}
    for severity in Severity:
        for n in range(3):
            pseudonyms = tuple(Pseudonym(_seed(f"pk{k}")[:16], _seed(f"ps{k}{severity}"))
                               for k in range(n))
            out[f"{severity.label}-{n}"] = SignalAnnex(severity, pseudonyms)
    return out


def sample_envelopes() -> dict[str, Envelope]:
    """Real signed envelopes of every kind the header decoder has a branch for."""
    base = _seal(("be/jpeeters",))
    annex = sample_annexes()["high-2"]
    tags = sample_tags()
    return {
        "message": base,
        "message-three-nodes": _seal(("nl/desk", "be/jpeeters", "lu/mschmit"),
                                     precedence=Precedence.FLASH),
        "request": _seal(("be/desk",), kind=Kind.REQUEST, urgency=Urgency.URGENT_DIRECT,
                         precedence=Precedence.IMMEDIATE),
        "reply": _seal(("be/jpeeters",), kind=Kind.REPLY, ref=base.id,
                       precedence=Precedence.ROUTINE),
        "forward-with-consent": _seal(("lu/mschmit",), ref=base.id,
                                      consent=b"\x93\x01owner-signed-consent"),
        "signal": _seal((desk_of("be"), desk_of("lu")), kind=Kind.SIGNAL, signal=annex,
                        tag=tags["H3-GREEN"]),
        "red": _seal(("be/jpeeters",), tag=tags["H2-RED"], plaintext=b""),
        "evidence": _seal(("nl/desk",), kind=Kind.EVIDENCE, ref=base.id),
        "notice": _seal(("be/jpeeters",), kind=Kind.NOTICE, ref=base.id,
                        tag=tags["H1-AMBER+STRICT"]),
        # The owner's updates of ``base`` (core/restriction.py): they carry its skeleton.
        "restrict": _seal(("be/jpeeters",), kind=Kind.RESTRICT, ref=base.id,
                          original=make_skeleton(base.to_bytes()), tag=tags["H2-RED"],
                          precedence=Precedence.IMMEDIATE),
        "recall": _seal(("be/jpeeters",), kind=Kind.RECALL, ref=base.id,
                        original=make_skeleton(base.to_bytes()),
                        precedence=Precedence.IMMEDIATE),
    }


# --- the harnesses' input framings ------------------------------------------------------------


def envelope_input(mode: int, payload: bytes) -> bytes:
    return bytes([mode]) + payload


def signed_parts_input(header_bytes: bytes, body_bytes: bytes) -> bytes:
    """ENVELOPE_SIGNED: the harness signs whatever header and body it is given."""
    return envelope_input(ENVELOPE_SIGNED,
                          struct.pack(">H", len(header_bytes)) + header_bytes + body_bytes)


def transaction_body(origin: str, txn: bytes, envelopes: list[bytes]) -> bytes:
    return codec.pack({"origin": origin, "txn": txn, "envelopes": envelopes})


def policy_wire_input(t: OwnershipTag, rest: bytes) -> bytes:
    raw = codec.pack(t.to_wire())
    return bytes([POLICY_WIRE]) + struct.pack(">H", len(raw)) + raw + rest


# --- seeds per harness ------------------------------------------------------------------------


def _edge_headers(env: Envelope) -> dict[str, dict[str, Any]]:
    """Header wire forms that break exactly one rule each, so that the fuzzer starts next to
    every refusal of the shape check (reaching them by mutation alone needs two coordinated
    edits, e.g. id time and created together)."""
    w = env.header.to_wire()
    annex = sample_annexes()["critical-1"].to_wire()
    recipient = w["recipients"][0]
    edits: dict[str, dict[str, Any]] = {
        "signal-without-annex": {"kind": "signal"},
        "annex-without-signal": {"signal": annex},
        "request-without-urgency": {"kind": "request"},
        "urgency-without-request": {"urgency": "other"},
        "reply-without-ref": {"kind": "reply"},
        "consent-without-ref": {"consent": b"consent"},
        "original-without-ref": {"original": b"original"},
        "repeated-recipient": {"recipients": [recipient, recipient]},
        "too-many-recipients": {"recipients": [[f"be/o{i}", recipient[1]] for i in range(65)]},
        "expires-at-created": {"expires": w["created"]},
        "lifetime-too-long": {"expires": w["created"] + 31 * DAY_MS},
        "retained-shorter-than-life": {"tag": {**w["tag"], "retain_until": w["expires"] - 1}},
        "retained-too-long": {"tag": {**w["tag"], "retain_until": w["created"] + 3651 * DAY_MS}},
        "other-sender": {"sender": "nl/someone-else"},
        "other-sender-key": {"sender_key": bytes(16)},
        "bad-ref": {"ref": b"short"},
        "extra-field": {"zz-extra": 1},  # reaching "unknown field" needs a sorted new key
    }
    return {name: {**w, **edit} for name, edit in edits.items()}


def envelope_seeds() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    envelopes = sample_envelopes()
    for name, env in envelopes.items():
        out[f"raw-{name}"] = envelope_input(ENVELOPE_RAW, env.to_bytes())
        out[f"signed-{name}"] = signed_parts_input(env.header_bytes, env.body_bytes)
        count = bytes([len(env.header.recipients)])
        out[f"direct-header-{name}"] = envelope_input(ENVELOPE_DIRECT, count + env.header_bytes)
        out[f"direct-body-{name}"] = envelope_input(ENVELOPE_DIRECT, count + env.body_bytes)
    # Near misses: real signatures over headers and bodies that break one rule each, and
    # envelopes that are fine but for the clock (created in the future, already expired).
    base = envelopes["message"]
    for name, wire in _edge_headers(base).items():
        out[f"edge-{name}"] = signed_parts_input(codec.pack(wire), base.body_bytes)
    body = base.body.to_wire()
    for name, edit in {"short-nonce": {"nonce": b"n"}, "no-tag": {"ciphertext": b"c"},
                       "extra-wrap": {"wraps": body["wraps"] * 2},
                       "extra-field": {"zz-extra": 1}}.items():
        out[f"edge-body-{name}"] = signed_parts_input(base.header_bytes,
                                                      codec.pack({**body, **edit}))
    future = _seal(("be/jpeeters",), now=NOW + HOUR_MS, expires=NOW + 2 * HOUR_MS)
    expired = _seal(("be/jpeeters",), now=NOW - 2 * DAY_MS, expires=NOW - DAY_MS)
    for name, env in {"future": future, "expired": expired}.items():
        out[f"edge-{name}"] = envelope_input(ENVELOPE_RAW, env.to_bytes())
    out["edge-unknown-signer"] = envelope_input(
        ENVELOPE_RAW, codec.pack([1, base.header_bytes, base.body_bytes, bytes(16), bytes(64)]))
    return out


def transaction_seeds() -> dict[str, bytes]:
    samples = list(sample_envelopes().values())
    envs, ids = [e.to_bytes() for e in samples], [e.header.id for e in samples]
    return {
        "one": transaction_body("nl", _seed("txn1")[:16], envs[:1]),
        "all": transaction_body("nl", _seed("txn2")[:16], envs),
        "empty": transaction_body("be", _seed("txn3")[:16], []),
        "short-envelopes": transaction_body("lu", _seed("txn4")[:16], [b"\x00", b"x" * 40]),
        # A relay's batch carries covers, a four-eyes release its approvals (review16i:
        # the harness took every such body for a non-canonical one).
        "covers": codec.pack({"covers": [[ids[0], ids[1:3]]], "envelopes": envs[:2],
                              "origin": "nl", "txn": _seed("txn7")[:16]}),
        "approvals": codec.pack({"approvals": [[ids[0], b"statement"]], "envelopes": envs[:1],
                                 "origin": "be", "txn": _seed("txn8")[:16]}),
        "empty-covers": codec.pack({"approvals": [], "covers": [], "envelopes": [],
                                    "origin": "lu", "txn": _seed("txn9")[:16]}),
        "edge-too-many-envelopes": transaction_body("nl", _seed("txn5")[:16], [b""] * 1025),
        "edge-extra-field": codec.pack({"envelopes": [], "extra": 1, "origin": "nl",
                                        "txn": _seed("txn6")[:16]}),
    }


def signal_seeds() -> dict[str, bytes]:
    out = {f"payload-{name}": bytes([SIGNAL_PAYLOAD]) + p.encode()
           for name, p in sample_payloads().items()}
    out.update({f"annex-{name}": bytes([SIGNAL_ANNEX]) + codec.pack(a.to_wire())
                for name, a in sample_annexes().items()})
    # Near misses for the validator: each payload field set just past one limit.
    wire = codec.unpack(sample_payloads()["propaganda"].encode(), what="signal", max_bytes=1 << 20)
    attachment = wire["attachments"][0]
    edits: dict[str, dict[str, Any]] = {
        "blank-text": {"text": " \n"}, "long-text": {"text": "x" * 4001},
        "five-attachments": {"attachments": [attachment] * 5},
        "empty-window": {"valid_until": wire["valid_from"]}, "bad-region": {"region": "nl-li"},
        "extra-field": {"zz-extra": 1},
    }
    for name, edit in edits.items():
        out[f"edge-payload-{name}"] = bytes([SIGNAL_PAYLOAD]) + codec.pack({**wire, **edit})
    annex = sample_annexes()["low-1"].to_wire()
    out["edge-annex-extra-field"] = bytes([SIGNAL_ANNEX]) + codec.pack({**annex, "zz": 1})
    return out


def policy_seeds() -> dict[str, bytes]:
    # Trailing bytes drive the FuzzedDataProvider (requests, a tightened tag); any bytes are
    # valid there, so a few fixed pseudo-random strings give the fuzzer different starts.
    tails = [hashlib.sha512(f"tail{i}".encode()).digest() * 2 for i in range(3)]
    out = {f"wire-{name}": policy_wire_input(t, tails[i % len(tails)])
           for i, (name, t) in enumerate(sample_tags().items())}
    out.update({f"built-{i}": bytes([POLICY_BUILT]) + tails[i] for i in range(len(tails))})
    # Near misses of the tag decoder: an unknown field, an unsorted share_with.
    wire = tag().to_wire()
    edits: dict[str, dict[str, Any]] = {"extra-field": {"zz-extra": 1},
                                        "unsorted-share": {"share_with": ["nl", "be"]}}
    for name, edit in edits.items():
        raw = codec.pack({**wire, **edit})
        out[f"edge-wire-{name}"] = (bytes([POLICY_WIRE]) + struct.pack(">H", len(raw)) + raw
                                    + tails[0])
    return out


# Modes of the checkpoint harness (fuzz_checkpoint).
CHECKPOINT_OFFER = 0
CHECKPOINT_SIGNED = 1
CHECKPOINT_ANSWER = 2


def checkpoint_seeds() -> dict[str, bytes]:
    from liaison_net.core import checkpoint as cp  # only this harness needs it
    from liaison_net.core import merkle

    leaves = [merkle.leaf_hash(bytes([i])) for i in range(9)]
    signed = [cp.sign_checkpoint(cp.Checkpoint("nl", n, merkle.root(leaves[:n]), NOW), SIGNER)
              for n in (4, 9)]
    offer = {"origin": "nl", "checkpoint": signed[1].raw,
             "proofs": [[4, merkle.consistency_proof(4, leaves)]], "seen": [signed[0].raw]}
    cosig = cp.cosign(signed[1], witness="be", key=SIGNER, at=NOW).to_wire()
    return {
        "offer": bytes([CHECKPOINT_OFFER]) + codec.pack(offer),
        "offer-no-proof": bytes([CHECKPOINT_OFFER]) + codec.pack(
            {**offer, "proofs": [], "seen": []}),
        "signed": bytes([CHECKPOINT_SIGNED]) + signed[0].checkpoint.body(),
        "edge-signed-extra-field": bytes([CHECKPOINT_SIGNED]) + codec.pack(
            {"node": "nl", "size": 4, "root": b"\x00" * 32, "at": NOW, "zz": 1}),
        "answer-witnessed": bytes([CHECKPOINT_ANSWER]) + codec.pack(
            {"status": "witnessed", "cosignature": cosig}),
        "answer-need-proof": bytes([CHECKPOINT_ANSWER]) + codec.pack(
            {"status": "need_proof", "from": [4, 7]}),
        "answer-alarm": bytes([CHECKPOINT_ANSWER]) + codec.pack(
            {"status": "alarm", "verdict": "split_view"}),
    }


SEEDS = {
    "envelope": envelope_seeds,
    "transaction": transaction_seeds,
    "signal": signal_seeds,
    "policy": policy_seeds,
    "checkpoint": checkpoint_seeds,
}
