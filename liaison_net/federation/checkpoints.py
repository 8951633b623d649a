"""Audit checkpoints between nodes: the route a witness serves, and the loop that offers
this node's checkpoints to its peers (the protocol is in ``services/checkpoints.py``).

``POST /fed/v1/audit-checkpoints`` (mutual TLS, a configured peer only, under the peer's
guard like every federation request), canonical msgpack::

    {"origin": node, "checkpoint": signed checkpoint,
     "proofs": [[old size, [hash, ...]], ...], "seen": [signed checkpoint of another node, ...]}

answered ``{"status": "witnessed", "cosignature": bytes}``, ``{"status": "need_proof",
"from": [old size, ...]}`` (the witness's latest and the checkpoints it heard of from
other witnesses) or ``{"status": "alarm", "verdict": text}``. Every field is checked for
shape and size here; every signature is verified by the service before a body is decoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from liaison_net.config import Peer
from liaison_net.core import checkpoint as cp
from liaison_net.core import codec
from liaison_net.errors import LiaisonError, LimitExceeded, Malformed, Refused, Unavailable
from liaison_net.federation.server import FederationServer
from liaison_net.http_common import MSGPACK, msgpack_response, read_msgpack
from liaison_net.pki.certificates import node_hostname
from liaison_net.services.checkpoints import AuditCheckpoints

log = structlog.get_logger("liaison.checkpoints")

CHECKPOINT_PATH = "/fed/v1/audit-checkpoints"
REQUEST_FIELDS = {"origin", "checkpoint", "proofs", "seen"}
MAX_REQUEST_BYTES = 32 * 1024
MAX_ANSWER_BYTES = 4096
WITNESSED, NEED_PROOF, ALARM = "witnessed", "need_proof", "alarm"


@dataclass(frozen=True)
class CheckpointRequest:
    checkpoint: bytes
    proofs: dict[int, list[bytes]]
    seen: list[bytes]


def _size(value: Any) -> int:
    if (not isinstance(value, int) or isinstance(value, bool)
            or not 0 < value <= cp.MAX_LOG_SIZE):
        raise Malformed("a size must be a positive integer")
    return value


def _proofs(value: Any) -> dict[int, list[bytes]]:
    if not isinstance(value, list):
        raise Malformed("proofs must be a list of [size, proof]")
    if len(value) > cp.MAX_PROOFS:
        raise LimitExceeded(f"at most {cp.MAX_PROOFS} proofs")
    out: dict[int, list[bytes]] = {}
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise Malformed("proofs must be a list of [size, proof]")
        size = _size(item[0])
        if size in out:
            raise Malformed("one proof per size")
        out[size] = cp.check_proof_hashes(item[1])
    return out


def decode_request(fields: dict[str, Any]) -> CheckpointRequest:
    checkpoint, seen = fields["checkpoint"], fields["seen"]
    if not isinstance(checkpoint, bytes) or len(checkpoint) > cp.MAX_CHECKPOINT_BYTES:
        raise Malformed(f"checkpoint must be at most {cp.MAX_CHECKPOINT_BYTES} bytes")
    if not isinstance(seen, list) or not all(isinstance(x, bytes) and
                                             len(x) <= cp.MAX_CHECKPOINT_BYTES for x in seen):
        raise Malformed("seen must be a list of checkpoints")
    if len(seen) > cp.MAX_SEEN:
        raise LimitExceeded(f"at most {cp.MAX_SEEN} checkpoints seen")
    return CheckpointRequest(checkpoint, _proofs(fields["proofs"]), seen)


@dataclass(frozen=True)
class Cosigned:
    cosignature: bytes


@dataclass(frozen=True)
class NeedProof:
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class Alarmed:
    verdict: str


def decode_answer(payload: bytes) -> Cosigned | NeedProof | Alarmed:
    """A witness's answer; raises only ``Malformed``."""
    try:
        value = codec.unpack(payload, what="answer", max_bytes=MAX_ANSWER_BYTES)
    except Refused as exc:
        raise Malformed(exc.detail) from exc
    status = value.get("status") if isinstance(value, dict) else None
    if status == WITNESSED:
        fields = codec.exact_map("answer", value, {"status", "cosignature"})
        if not isinstance(fields["cosignature"], bytes):
            raise Malformed("cosignature must be bytes")
        return Cosigned(fields["cosignature"])
    if status == NEED_PROOF:
        sizes = codec.exact_map("answer", value, {"status", "from"})["from"]
        if not isinstance(sizes, list) or not 0 < len(sizes) <= cp.MAX_PROOFS:
            raise Malformed("the sizes to prove from must be a short list")
        return NeedProof(tuple(_size(x) for x in sizes))
    if status == ALARM:
        verdict = codec.exact_map("answer", value, {"status", "verdict"})["verdict"]
        return Alarmed(str(verdict)[:40])
    raise Malformed("unknown checkpoint answer")


class CheckpointRoute:
    """The witness's door: a peer's checkpoint in, the service's answer out."""

    def __init__(self, server: FederationServer, service: AuditCheckpoints) -> None:
        self.server = server
        self.service = service

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(CHECKPOINT_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        server = self.server
        async with server._refusal_audited(request):
            peer = server._peer(request)
            async with server.guard.admit(peer):
                fields = await server.guard.body(
                    peer, read_msgpack(request, MAX_REQUEST_BYTES, REQUEST_FIELDS))
                server._claims(peer, fields["origin"])
                body = decode_request(fields)
                await server._charged(peer, 1)
                answer = await self.service.witness(
                    peer, checkpoint=body.checkpoint, proofs=body.proofs, seen=body.seen)
        if answer.verdict is cp.Verdict.NEED_PROOF:
            return msgpack_response({"status": NEED_PROOF, "from": list(answer.proof_from)})
        if answer.verdict.alarm:
            return msgpack_response({"status": ALARM, "verdict": answer.verdict.value})
        return msgpack_response({"status": WITNESSED, "cosignature": answer.cosignature})


class CheckpointPublisher:
    """Offers this node's latest checkpoint to each peer that has not cosigned it yet, and
    again every ``heartbeat_s`` while the log is quiet: each offer carries what this node
    witnessed of the others (``seen``), so witnesses compare notes even then. A peer that
    cannot be reached is tried again after ``retry_s``. Of a node's several workers, only
    the one that sends to a peer (``offers_to``: it holds that peer's lease) offers it
    checkpoints: two workers' offers crossing on the wire would look like a rollback."""

    def __init__(self, *, service: AuditCheckpoints, peers: Sequence[Peer],
                 session: aiohttp.ClientSession, request_timeout_s: float,
                 tick_s: float, heartbeat_s: float,
                 offers_to: Callable[[str], bool] = lambda peer: True) -> None:
        self.service = service
        self.offers_to = offers_to
        self.peers = list(peers)
        self.session = session
        self.request_timeout_s = request_timeout_s
        self.tick_s = tick_s
        self.heartbeat_s = heartbeat_s
        self.retry_s = min(max(tick_s * 5, 1.0), 30.0)
        self._retry_at: dict[str, float] = {}
        self._offered_at: dict[str, float] = {}
        self._url_index: dict[str, int] = {}

    async def run(self) -> None:
        await self.service.start()
        while True:
            await self.tick()
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> None:
        if not any(self.offers_to(peer.id) for peer in self.peers):
            return  # another worker of this node sends to every peer: it checkpoints
        try:
            latest = await self.service.current()
        except LiaisonError as exc:  # storage trouble (a full disk): next tick, not a crash
            log.warning("audit.checkpoint_failed", code=exc.code, reason=exc.detail[:200])
            return
        if latest is None:
            return
        loop = asyncio.get_running_loop()
        seen: list[bytes] | None = None
        for peer in self.peers:
            now = loop.time()
            if not self.offers_to(peer.id) or now < self._retry_at.get(peer.id, 0.0) or (
                    self.service.cosigned.get(peer.id, 0) >= latest.checkpoint.size
                    and now < self._offered_at.get(peer.id, 0.0) + self.heartbeat_s):
                continue
            self._offered_at[peer.id] = now
            try:
                if seen is None:
                    seen = await self.service.seen()
                await self._offer(peer, latest, seen)
            except LiaisonError as exc:
                self._retry_at[peer.id] = loop.time() + self.retry_s
                log.info("audit.checkpoint_not_witnessed", peer=peer.id, code=exc.code,
                         reason=exc.detail[:200])

    async def _offer(self, peer: Peer, signed: cp.SignedCheckpoint, seen: list[bytes]) -> None:
        size = signed.checkpoint.size
        # Our guess of what the peer holds (what it last cosigned), then the sizes it names.
        sizes: tuple[int, ...] = (self.service.cosigned.get(peer.id, 0),)
        for _ in range(2):
            proofs = [[s, self.service.proof(s, size)] for s in sizes if 0 < s < size]
            answer = decode_answer(await self._post(peer, {
                "origin": self.service.node_id, "checkpoint": signed.raw, "proofs": proofs,
                "seen": seen}))
            if isinstance(answer, NeedProof):
                if not all(0 < s < size for s in answer.sizes):
                    raise Malformed(f"{peer.id} asked for proofs from sizes {answer.sizes}, "
                                    f"which a log of {size} entries cannot give")
                sizes = answer.sizes
                continue
            if isinstance(answer, Alarmed):
                log.error("audit.checkpoint_alarm_at_witness", peer=peer.id,
                          verdict=answer.verdict, size=size)
                raise Unavailable(f"{peer.id} raised an alarm: {answer.verdict}")
            await self.service.cosigned_by(peer.id, signed, answer.cosignature)
            return
        raise Malformed(f"{peer.id} asked for a consistency proof twice")

    async def _post(self, peer: Peer, body: dict[str, Any]) -> bytes:
        """POST to the peer's URL that answered last; one that cannot be reached passes the
        offer to the next (a peer running several workers lists them all, as for envelopes)."""
        data = codec.pack(body)
        first = self._url_index.get(peer.id, 0) % len(peer.urls)
        unreachable: Unavailable | None = None
        for step in range(len(peer.urls)):
            index = (first + step) % len(peer.urls)
            try:
                payload = await self._post_to(peer, peer.urls[index], data)
            except _Unreachable as exc:
                unreachable = Unavailable(f"cannot reach {peer.id} at {peer.urls[index]}: "
                                          f"{exc}")
                continue
            self._url_index[peer.id] = index
            return payload
        assert unreachable is not None
        raise unreachable

    async def _post_to(self, peer: Peer, url: str, data: bytes) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        try:
            async with self.session.post(
                    url + CHECKPOINT_PATH, data=data,
                    headers={"Content-Type": MSGPACK}, timeout=timeout,
                    server_hostname=node_hostname(peer.id)) as resp:
                payload = await resp.content.read(MAX_ANSWER_BYTES + 1)
                if resp.status != 200:
                    raise Unavailable(f"{peer.id} answered HTTP {resp.status}: "
                                      f"{payload[:200]!r}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _Unreachable(type(exc).__name__) from exc
        return payload


class _Unreachable(Exception):
    """No answer from one of a peer's URLs: the next one may answer."""
