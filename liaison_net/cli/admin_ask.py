"""The CLI's side of the admin socket: ask the running node, or learn that none runs.

aiohttp is imported only when a socket file is there to ask: most admin commands run
beside no node, and its client costs a start-up that they would pay for nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liaison_net.client.answers import error_from_answer
from liaison_net.errors import Malformed, Unavailable

MAX_ANSWER_BYTES = 64 * 1024


async def ask_node(path: Path, route: str, body: bytes, content_type: str, *,
                   timeout_s: float = 30.0) -> dict[str, Any] | None:
    """POST ``body`` to the node listening at ``path``; its JSON answer, or None when no
    node listens there (no socket file, or one left by a node that is gone). Once the
    request may have reached the node, a failure is an error, never None: the caller
    must not then do the write a second time itself."""
    if not path.exists():
        return None
    import aiohttp  # here, not at the top: see the docstring

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)),
                                     timeout=timeout) as session:
        try:
            async with session.post(f"http://node{route}", data=body,
                                    headers={"Content-Type": content_type}) as resp:
                status = resp.status
                answer = await resp.content.read(MAX_ANSWER_BYTES + 1)
        except aiohttp.ClientConnectorError:
            return None  # nothing listens: the node is not running
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the node did not answer on {path}: {exc}; check with "
                              "`liaison admin status` before trying again") from exc
    if status != 200:
        raise error_from_answer(status, answer)
    try:
        value = json.loads(answer)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed("the node's admin answer is not JSON") from exc
    if not isinstance(value, dict) or len(answer) > MAX_ANSWER_BYTES:
        raise Malformed("the node's admin answer has the wrong shape")
    return value
