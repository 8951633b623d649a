"""The client end of the node's live inbox stream: one websocket, its frames as entries.

``NodeSession`` logs in and hands its HTTP session and token here (``open_socket``), so
the websocket shares the session's TLS context, connection pool and timeouts; reconnecting
after a break is ``client.follow``'s job. As in ``client.session``, no aiohttp exception
leaves this module: a refused handshake becomes the typed error for its status, and a
stream that closes or breaks, for whatever reason, ends with ``Unavailable``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp

from liaison_net import errors
from liaison_net.client.answers import InboxEntry, clean, inbox_entry, json_map
from liaison_net.pki.certificates import node_hostname

MAX_STREAM_MESSAGE = 64 * 1024  # one inbox entry as JSON is a few hundred bytes
STREAM_HEARTBEAT_S = 20.0  # ping the node; no pong within half of it: the stream is dead


async def open_socket(http: aiohttp.ClientSession, base_url: str, path: str, *,
                      token: str | None, node: str,
                      timeout_s: float,
                      what: str = "inbox stream") -> aiohttp.ClientWebSocketResponse:
    """Open the websocket at ``path`` of the home ``node`` with the bearer ``token``,
    translating every failure (``timeout_s`` is the session's, named in the error;
    ``what`` names the stream in a refusal)."""
    try:
        return await http.ws_connect(
            base_url + path, headers={"Authorization": f"Bearer {token}"},
            heartbeat=STREAM_HEARTBEAT_S, max_msg_size=MAX_STREAM_MESSAGE,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            server_hostname=node_hostname(node))
    except aiohttp.WSServerHandshakeError as exc:
        raise stream_refused(exc.status, what) from None
    except aiohttp.ClientConnectorCertificateError:
        raise errors.Unauthorized(
            f"the TLS certificate of {base_url} is not one the network CA issued "
            f"to node {node} for this host") from None
    except TimeoutError:
        raise errors.Unavailable(
            f"node at {base_url} did not answer within {timeout_s:g} s") from None
    except (aiohttp.ClientError, ConnectionError) as exc:
        reason = clean(str(exc) or type(exc).__name__)
        raise errors.Unavailable(f"cannot reach node at {base_url}: {reason}") from None


async def stream_entries(ws: aiohttp.ClientWebSocketResponse,
                         base_url: str) -> AsyncGenerator[InboxEntry, None]:
    """The entries the node pushes, until the stream closes (then ``Unavailable``)."""
    while True:
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            yield inbox_entry(json_map(str(message.data).encode(), "inbox stream"))
        elif message.type is aiohttp.WSMsgType.BINARY:
            raise errors.Malformed("node sent a binary frame on the inbox stream")
        elif message.type is aiohttp.WSMsgType.ERROR:
            raise errors.Unavailable(f"inbox stream from {base_url} broke: "
                                     f"{clean(str(message.data) or 'connection lost')}")
        else:  # CLOSE, CLOSING, CLOSED
            reason = clean(str(message.extra or "")) if message.type is \
                aiohttp.WSMsgType.CLOSE else ""
            raise errors.Unavailable(f"node at {base_url} closed the inbox stream "
                                     f"({ws.close_code}{': ' + reason if reason else ''})")


def stream_refused(status: int, what: str = "inbox stream") -> errors.LiaisonError:
    """A refused stream handshake, by status (its JSON body does not reach us)."""
    detail = f"the node refused the {what} (HTTP {status})"
    if status == 429 and what != "inbox stream":
        return errors.RateLimited(f"{detail}: too many {what}s are open for you or on the "
                                  "node; close one and try again")
    if status == 429:
        return errors.RateLimited(f"{detail}: too many live inbox streams are open for you "
                                  "or on the node; close one (another `liaison inbox "
                                  "--follow`?) and try again")
    by_status: dict[int, type[errors.LiaisonError]] = {
        400: errors.Malformed, 401: errors.Unauthorized, 403: errors.Forbidden,
        404: errors.NotFound, 503: errors.Unavailable}
    cls = by_status.get(status)
    if cls is not None:
        return cls(detail)
    return errors.Refused(detail) if status < 500 else errors.NodeFault(detail)
