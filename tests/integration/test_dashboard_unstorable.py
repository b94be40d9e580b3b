"""A value PostgreSQL refuses (out of range for its type) answers the dashboard's 422 page,
naming the field, not its 500 page."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import text
from starlette.routing import Mount

from engine.db import transaction
from tests.integration.harness import Stack
from tests.integration.test_unexpected_errors import serving
from wiring.server import create_server

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def test_a_value_out_of_range_for_its_column_is_a_422_page_naming_the_field(
    rt_stack: Stack,
) -> None:
    server = create_server(
        rt_stack.settings, runtime=rt_stack.runtime, dispatcher=rt_stack.dispatcher
    )
    mount = next(r for r in server.routes if isinstance(r, Mount) and r.path == "/dashboard")
    app = mount.app
    assert isinstance(app, FastAPI)

    # A page whose filter reaches an integer column as given, as a filter can.
    def attempts(request: Request, attempt: str) -> Response:
        with transaction(rt_stack.runtime.sessions) as session:
            session.execute(
                text("SELECT count(*) FROM run_steps WHERE attempt = CAST(:n AS integer)"),
                {"n": attempt},
            )
        return Response("ok")

    app.add_api_route("/probe", attempts)
    with serving(server) as port:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/dashboard/probe", params={"attempt": "99999999999"}
        )

    assert answer.status_code == 422, answer.text
    found = re.search(r'<p class="problem-text"[^>]*>(.*?)</p>', answer.text, re.S)
    assert found is not None, answer.text
    assert found.group(1).strip() == (
        "`attempt` cannot be used here: value &#34;99999999999&#34; is out of range for type"
        " integer. Nothing was changed."
    )
