"""What the node's two HTTP faces share: typed errors as JSON, bounded bodies.

Every handler raises errors from our tree; the middleware turns them into a 4xx/5xx answer
``{"error": code, "detail": text}``. aiohttp's own HTTP errors (413 for a body over the
limit, 405, 404) are reshaped the same way, and anything unexpected is logged and answered
500 ``node_fault`` without details, so no input can take the node down.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from liaison_net.core import codec
from liaison_net.errors import LiaisonError, LimitExceeded, Malformed, UnsupportedMedia

log = structlog.get_logger("liaison.web")

MSGPACK = "application/x-msgpack"
ENVELOPE = "application/x-liaison-envelope"
#: On an envelope fetched by an officer: how many owner restriction updates apply to it on
#: this node (core/restriction.py); absent when none. A hint: the client checks them.
UPDATES_HEADER = "Liaison-Updates"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: LiaisonError) -> web.Response:
    return web.json_response(exc.to_dict(), status=exc.http_status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LiaisonError as exc:
        if exc.http_status >= 500:
            log.warning("request.failed", path=request.path, code=exc.code)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Only codes of errors.py go out: a wrong method has no finer class than `refused`.
        code = {404: "not_found", 413: "limit_exceeded"}.get(exc.status, "refused")
        detail = exc.reason
        headers: dict[str, str] = {}
        if exc.status == 405:
            detail = f"method {request.method[:16]} is not allowed on {request.path[:100]}"
            if "Allow" in exc.headers:
                headers["Allow"] = exc.headers["Allow"]
        return web.json_response({"error": code, "detail": detail}, status=exc.status,
                                 headers=headers)
    except Exception:
        log.exception("request.crashed", path=request.path)
        return web.json_response({"error": "node_fault", "detail": "internal error"},
                                 status=500)


async def read_body(request: web.Request, content_type: str, max_bytes: int) -> bytes:
    if request.content_type != content_type:
        raise UnsupportedMedia(f"expected Content-Type {content_type}, "
                               f"got {request.content_type or 'none'}")
    # The refusal is built when it is raised, not on every request that passes.
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_big(max_bytes)
    body = await request.read()
    if len(body) > max_bytes:
        raise _too_big(max_bytes)
    return body


def _too_big(max_bytes: int) -> LimitExceeded:
    return LimitExceeded(f"request body exceeds {max_bytes} bytes")


async def read_msgpack(request: web.Request, max_bytes: int, fields: set[str]) -> dict[str, Any]:
    body = await read_body(request, MSGPACK, max_bytes)
    return codec.exact_map("request", codec.unpack(body, what="request", max_bytes=max_bytes),
                           fields)


async def read_json(request: web.Request, max_bytes: int, fields: set[str]) -> dict[str, Any]:
    body = await read_body(request, "application/json", max_bytes)
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed("request body is not valid JSON") from exc
    except RecursionError as exc:  # json's C scanner: nesting deeper than the stack allows
        raise Malformed("request body is nested too deeply") from exc
    return codec.exact_map("request", value, fields)


def msgpack_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=codec.pack(value), status=status, content_type=MSGPACK)
