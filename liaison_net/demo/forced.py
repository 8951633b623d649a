"""What a modified client could do: post an envelope to the officer API, skipping every
check the real client makes, so the demo can show that the node refuses it too.
"""

from __future__ import annotations

import json

import aiohttp

from liaison_net.client.session import ENVELOPE_MEDIA_TYPE, officer_ssl_context
from liaison_net.core import crypto
from liaison_net.core.login import login_message
from liaison_net.demo.network import DemoError, Officer
from liaison_net.pki.certificates import node_hostname


async def force_submit(officer: Officer, raw: bytes, *,
                       timeout_s: float) -> tuple[int, str, str]:
    """Log in and POST an envelope to the home node's officer API, skipping every client
    check: what a modified client could do. Returns (HTTP status, error code, detail)."""
    try:
        status, body = await _force_submit(officer, raw, timeout_s=timeout_s)
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError, TypeError) as exc:
        raise DemoError(f"forcing the envelope through {officer.keystore.node_url} failed: "
                        f"{type(exc).__name__}: {exc}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    return status, str(answer.get("error", "")), str(answer.get("detail", ""))[:300]


async def _force_submit(officer: Officer, raw: bytes, *, timeout_s: float) -> tuple[int, bytes]:
    ks = officer.keystore
    hostname = node_hostname(ks.node)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(ssl=officer_ssl_context(ks.ca_cert_pem))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        async with http.post(f"{ks.node_url}/api/v1/login/challenge",
                             json={"officer": ks.officer}, server_hostname=hostname) as resp:
            challenge = bytes.fromhex((await resp.json())["challenge"])
        signature = crypto.sign(ks.signing, login_message(ks.node, challenge))
        async with http.post(f"{ks.node_url}/api/v1/login", server_hostname=hostname,
                             json={"officer": ks.officer, "challenge": challenge.hex(),
                                   "signature": signature.hex()}) as resp:
            token = (await resp.json())["token"]
        async with http.post(f"{ks.node_url}/api/v1/envelopes", data=raw,
                             server_hostname=hostname,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": ENVELOPE_MEDIA_TYPE}) as resp:
            return resp.status, await resp.read()
