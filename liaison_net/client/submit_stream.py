"""The client end of the node's submit stream: many envelopes in flight on one websocket,
each answered on its own after its commit (``officer_api.submit_stream`` has the frames).

``async with session.submit_stream() as s: result = await s.submit(envelope)``; submits
may run concurrently, answers are matched by the correlation number this module gives each
frame. A submit ends as ``NodeSession.submit`` ends: a ``SubmitResult``, or the typed error
of the node's refusal. If the stream closes before an envelope's answer, that submit raises
``Unavailable`` (``Unauthorized`` for an expired token): the envelope may or may not be
stored, and submitting it again is safe (the node answers ``duplicate``). So does a submit
whose answer has not come within ``answer_timeout_s`` of its frame (the session's request
timeout, as a single submit's): a node that never answers holds no caller for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp

from liaison_net import errors
from liaison_net.client.answers import SubmitResult, check_id, clean, error_from_answer

NUMBER_BYTES = 8
MAX_IN_FLIGHT = 64  # the node's default bound; more would wait in its socket buffer
ANSWER_TIMEOUT_S = 30.0  # NodeSession's default request timeout
CLOSE_TOKEN_EXPIRED = 4401


class SubmitStream:
    """One open submit stream (``NodeSession.submit_stream`` opens and closes it)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, base_url: str, *,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 answer_timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self._ws = ws
        self._answer_timeout_s = answer_timeout_s
        self._base_url = base_url
        self._room = asyncio.Semaphore(max_in_flight)
        self._waiting: dict[int, asyncio.Future[SubmitResult]] = {}
        self._next = 0
        self._ended: errors.LiaisonError | None = None
        self._reader = asyncio.create_task(self._read(), name="submit-stream-answers")

    async def submit(self, envelope: bytes) -> SubmitResult:
        """Hand over one envelope; its answer, once the node committed it."""
        async with self._room:
            if self._ended is not None:
                raise self._ended
            self._next += 1
            number = self._next
            answer: asyncio.Future[SubmitResult] = asyncio.get_running_loop().create_future()
            self._waiting[number] = answer
            try:
                await self._ws.send_bytes(number.to_bytes(NUMBER_BYTES, "big") + envelope)
            except (aiohttp.ClientError, ConnectionError) as exc:
                self._waiting.pop(number, None)
                raise errors.Unavailable(f"submit stream to {self._base_url} broke: "
                                         f"{clean(str(exc) or type(exc).__name__)}") from None
            try:
                async with asyncio.timeout(self._answer_timeout_s):
                    return await answer
            except TimeoutError:
                raise errors.Unavailable(
                    f"node at {self._base_url} did not answer a submit within "
                    f"{self._answer_timeout_s:g} s; it may or may not be stored, submitting "
                    "it again is safe") from None
            finally:
                self._waiting.pop(number, None)  # a late answer finds nothing waiting

    async def close(self) -> None:
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        try:
            while True:
                message = await self._ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._answer(str(message.data))
                    continue
                if message.type is aiohttp.WSMsgType.ERROR:
                    reason = clean(str(message.data) or "connection lost")
                    self._end(errors.Unavailable(
                        f"submit stream to {self._base_url} broke: {reason}"))
                elif message.type is aiohttp.WSMsgType.BINARY:
                    self._end(errors.Malformed("node sent a binary frame on the submit "
                                               "stream"))
                else:  # CLOSE, CLOSING, CLOSED
                    self._end(_closed(self._ws.close_code, message, self._base_url))
                return
        except errors.LiaisonError as exc:  # an answer we cannot read
            self._end(exc)
            await self._ws.close()

    def _answer(self, text: str) -> None:
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):  # nesting deeper than the parser's stack
            raise errors.Malformed("node sent a submit answer that is not JSON") from None
        if not isinstance(body, dict):
            raise errors.Malformed("node sent a submit answer that is not an object")
        number, http = body.get("n"), body.get("http")
        if not isinstance(number, int) or not isinstance(http, int):
            raise errors.Malformed("node sent a submit answer without its number")
        waiting = self._waiting.pop(number, None)
        if waiting is None or waiting.done():
            return  # not a number of ours (or the submit was cancelled): nothing waits
        if http >= 400:
            waiting.set_exception(error_from_answer(http, json.dumps(
                {"error": body.get("error"), "detail": body.get("detail")}).encode()))
            return
        status = body.get("status")
        envelope_id = body.get("id")
        if status not in ("accepted", "duplicate") or not isinstance(envelope_id, str):
            waiting.set_exception(errors.Malformed(
                f"node answered submit with status {clean(str(status))!r:.40}"))
            return
        try:
            result = SubmitResult(check_id(envelope_id), status, held=body.get("held") is True)
        except errors.LiaisonError as exc:
            waiting.set_exception(exc)
            return
        waiting.set_result(result)

    def _end(self, error: errors.LiaisonError) -> None:
        """No more answers will come: every submit still waiting ends with ``error``."""
        if self._ended is None:
            self._ended = error
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(error)
        self._waiting.clear()


def _closed(code: int | None, message: aiohttp.WSMessage,
            base_url: str) -> errors.LiaisonError:
    reason = clean(str(message.extra or "")) if message.type is aiohttp.WSMsgType.CLOSE else ""
    detail = (f"node at {base_url} closed the submit stream "
              f"({code}{': ' + reason if reason else ''}) before answering")
    if code == CLOSE_TOKEN_EXPIRED:
        return errors.Unauthorized(detail)
    return errors.Unavailable(detail)
