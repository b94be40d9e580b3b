"""The fault lab's Resend stub acts only on whole requests, as a provider does: a worker killed
between a request's headers and the end of its body sends nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.faultlab.sinks import ResendStub

KEY = "re_stub_key"


@pytest.fixture
def stub() -> Iterator[ResendStub]:
    # Never failing on purpose and never slow: each request's fate is its shape alone.
    server = ResendStub(KEY, fail_share=0)
    server.slow_share = 0
    server.start()
    yield server
    server.stop()


def address(stub: ResendStub) -> tuple[str, int]:
    host, port = stub.server.server_address[:2]
    return str(host), int(port)


def post(stub: ResendStub, body: dict[str, object], key: str) -> httpx.Response:
    host, port = address(stub)
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": key}
    return httpx.post(f"http://{host}:{port}/emails", json=body, headers=headers, timeout=5)


@pytest.mark.parametrize("body_bytes", [0, 5])
def test_a_request_cut_after_its_headers_sends_nothing(stub: ResendStub, body_bytes: int) -> None:
    body = json.dumps({"to": ["a@example.com"], "subject": "Hi"}).encode()
    with socket.create_connection(address(stub), timeout=5) as client:
        client.sendall(
            b"POST /emails HTTP/1.1\r\nHost: stub\r\n"
            + f"Authorization: Bearer {KEY}\r\nIdempotency-Key: automations-cut\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:body_bytes]
        )
    time.sleep(0.2)  # the stub's thread reads to the end of what came
    assert stub.deliveries() == []
    # The worker that takes the step over sends it whole, under the same key: sent once.
    sent = post(stub, {"to": ["a@example.com"], "subject": "Hi"}, "automations-cut")
    assert sent.status_code == 200
    assert [(d.email_id, d.to, d.subject) for d in stub.deliveries()] == [
        ("cut", "a@example.com", "Hi")
    ]


def test_an_email_without_a_recipient_or_a_subject_is_refused(stub: ResendStub) -> None:
    assert post(stub, {"subject": "Hi"}, "automations-no-to").status_code == 422
    assert post(stub, {"to": ["a@example.com"]}, "automations-no-subject").status_code == 422
    assert stub.deliveries() == []
