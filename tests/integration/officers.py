"""Officers for integration tests: real keystores, enrolled with `liaison admin enrol-officer`,
talking to their node through the same client library as the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from liaison_net.client import keystore as ks
from liaison_net.client.directory import Directory
from liaison_net.client.session import NodeSession
from liaison_net.core import sealing
from liaison_net.core.almanac import Almanac
from liaison_net.core.envelope import Envelope, Kind, Precedence
from liaison_net.core.limits import HOUR_MS
from liaison_net.core.ownership import Handling, Owner, OwnershipTag, PermittedAction, Tlp
from tests.core.factories import make_tag
from tests.integration.network import Network, run_cli

PASSPHRASE = b"correct horse battery staple"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class OfficerAgent:
    id: str
    keystore: ks.Keystore
    path: Path

    def session(self) -> NodeSession:
        return NodeSession(self.keystore)

    def seal(self, directory: Directory, to: list[str], text: bytes, *,
             tag: OwnershipTag | None = None, ttl_ms: int = 8 * HOUR_MS,
             precedence: Precedence = Precedence.ROUTINE) -> Envelope:
        now = now_ms()
        return sealing.seal(
            sender=self.id, sender_key=self.keystore.signing,
            recipients=[directory.recipient(o, now=now) for o in to],
            tag=tag or benelux_tag(self.id.split("/")[0]), plaintext=text, now=now,
            expires=now + ttl_ms, kind=Kind.MESSAGE, precedence=precedence)


def benelux_tag(owner_node: str, *, share_with: frozenset[str] = frozenset({"be", "nl", "lu"}),
                tlp: Tlp = Tlp.AMBER, handling: Handling = Handling.H0) -> OwnershipTag:
    """The default test tag, owned by ``owner_node``'s liaison unit, at the wall clock, that
    permits forwarding only."""
    return make_tag(now=now_ms(), owner=Owner(owner_node, "liaison"), handling=handling,
                    tlp=tlp, share_with=share_with | {owner_node},
                    permitted_actions=frozenset({PermittedAction.FORWARD}),
                    purpose="cross-border investigation")


def enrol(net: Network, officer_id: str, *, languages: tuple[str, ...] = (),
          posting: str = "", coverage: tuple[str, ...] = ()) -> OfficerAgent:
    """A keystore for ``officer_id`` and its card, with an almanac entry if given
    (``coverage=("co/drugs",)``: covers Colombia for drugs)."""
    node = net.nodes[officer_id.split("/")[0]]
    path = net.root / "officers" / f"{officer_id.replace('/', '-')}.keystore"
    path.parent.mkdir(exist_ok=True)
    almanac = Almanac.create(languages=languages, posting=posting, coverage=coverage)
    keystore, request = ks.create(path, officer_id, officer_id.split("/")[1].title(),
                                  "liaison officer", node.client_url,
                                  net.ca_cert.read_bytes(), PASSPHRASE, almanac=almanac)
    request_path = path.with_suffix(".request")
    request_path.write_bytes(request)
    run_cli("admin", "enrol-officer", str(request_path), "--config", str(node.config))
    return OfficerAgent(officer_id, keystore, path)


async def bearer_token(agent: OfficerAgent) -> str:
    """Log ``agent`` in by challenge-response over raw HTTP; the node's bearer token.

    For tests that send requests the client library would never build."""
    import aiohttp

    from liaison_net.client.session import officer_ssl_context
    from liaison_net.core import crypto
    from liaison_net.core.login import login_message
    from liaison_net.pki.certificates import node_hostname

    ks = agent.keystore
    connector = aiohttp.TCPConnector(ssl=officer_ssl_context(ks.ca_cert_pem))
    async with aiohttp.ClientSession(connector=connector) as http:
        async def post(path: str, body: dict[str, str]) -> dict[str, str]:
            async with http.post(ks.node_url + path, json=body,
                                 server_hostname=node_hostname(ks.node)) as resp:
                assert resp.status == 200, (path, resp.status, await resp.text())
                return dict(await resp.json())

        challenge = bytes.fromhex((await post("/api/v1/login/challenge",
                                              {"officer": ks.officer}))["challenge"])
        signature = crypto.sign(ks.signing, login_message(ks.node, challenge))
        answer = await post("/api/v1/login", {"officer": ks.officer,
                                              "challenge": challenge.hex(),
                                              "signature": signature.hex()})
    return answer["token"]
