"""The officer API's per-request shortcuts answer what the general code answered.

The single submit writes its JSON answer out instead of encoding it (``submit_answer``);
a client must not see a difference: the same body bytes and the same headers as
``web.json_response`` of the same value. ``read_body`` builds its refusal only when it
refuses; the refusal stays the same.
"""

from __future__ import annotations

import json
import os

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from liaison_net.core.ids import id_to_text
from liaison_net.officer_api.routes import submit_answer


def _general(envelope_id: bytes, duplicate: bool, held: bool) -> web.Response:
    """The answer as the handler built it before: json_response of a dict."""
    return web.json_response(
        {"id": id_to_text(envelope_id), "status": "duplicate" if duplicate else "accepted",
         **({"held": True} if held else {})}, status=202)


@given(envelope_id=st.binary(min_size=16, max_size=16), duplicate=st.booleans(),
       held=st.booleans())
def test_submit_answer_is_the_json_response_of_the_same_value(
        envelope_id: bytes, duplicate: bool, held: bool) -> None:
    written = submit_answer(envelope_id, duplicate=duplicate, held=held)
    general = _general(envelope_id, duplicate, held)
    assert written.body == general.body
    assert written.status == general.status == 202
    assert dict(written.headers) == dict(general.headers)
    assert written.content_type == "application/json" and written.charset == "utf-8"


@pytest.mark.parametrize(("duplicate", "held", "expected"), [
    (False, False, {"status": "accepted"}),
    (True, False, {"status": "duplicate"}),
    (False, True, {"status": "accepted", "held": True}),
])
def test_submit_answer_reads_back_as_json(duplicate: bool, held: bool,
                                          expected: dict[str, object]) -> None:
    envelope_id = os.urandom(16)
    body = submit_answer(envelope_id, duplicate=duplicate, held=held).body
    assert isinstance(body, bytes)
    assert json.loads(body) == {"id": id_to_text(envelope_id), **expected}
