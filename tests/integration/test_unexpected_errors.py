"""A bug in a route answers 500 in the API's shape, and the client's connection stays usable:
found by an audit, where each 500 also reset the keep-alive connection it came on."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from api.app import create_app
from engine.dispatch import NullDispatcher
from engine.settings import Settings
from tests.integration.harness import serving
from wiring.server import create_server


def boom() -> None:
    raise RuntimeError("a bug in a route")


def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    app: FastAPI = create_app(settings(tmp_path), dispatcher=NullDispatcher())
    app.add_api_route("/boom", boom)
    with serving(app) as port:
        yield port


@pytest.fixture
def dashboard_server(tmp_path: Path) -> Iterator[int]:
    app = create_server(settings(tmp_path), dispatcher=NullDispatcher())
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/dashboard")
    assert isinstance(mount.app, FastAPI)
    mount.app.add_api_route("/boom", boom)
    with serving(app) as port:
        yield port


def exchange(connection: socket.socket, path: str) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a kept-alive connection, and its whole answer."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = connection.recv(65536)
        assert chunk, "the server closed the connection"
        body += chunk
    return int(status_line.split()[1]), headers, body


def test_a_500_keeps_the_connection_and_the_api_s_shape(
    server: int, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as connection:
        status, headers, body = exchange(connection, "/boom")
        assert status == 500
        assert json.loads(body) == {
            "statusCode": 500,
            "name": "application_error",
            "message": "Internal server error",
        }
        assert headers["x-content-type-options"] == "nosniff"  # security headers, still
        assert "a bug in a route" not in body.decode()
        # The same connection answers the next request.
        status, _, _ = exchange(connection, "/health")
        assert status == 200
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_a_dashboard_500_is_its_error_page_and_keeps_the_connection(
    dashboard_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_connection(("127.0.0.1", dashboard_server), timeout=10) as connection:
        status, headers, body = exchange(connection, "/dashboard/boom")
        assert status == 500 and headers["content-type"].startswith("text/html")
        assert "Something went wrong on the server" in body.decode()
        assert "a bug in a route" not in body.decode()
        status, _, _ = exchange(connection, "/dashboard/login")
        assert status == 200
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in logged] == ["dashboard error"]  # once, not by the API again
    assert logged[0].exc_info is not None
