"""Where the workers' email lands: an SMTP sink and a stub of Resend's HTTP API."""

from __future__ import annotations

import email
import email.policy
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from bench.faultlab.services import free_port


@dataclass(frozen=True)
class Delivery:
    """One email as the receiving side saw it; `email_id` comes from Message-ID or the key."""

    email_id: str | None
    to: str
    subject: str


class SmtpSink:
    """An in-process SMTP server that keeps every message it accepts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Delivery] = []
        self._refusals: dict[str, int] = {}
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}?timeout=5"

    def refuse_once(self, address: str) -> None:
        """Answer 451 (try later) to the next message for `address`."""
        with self._lock:
            self._refusals[address] = self._refusals.get(address, 0) + 1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            for address in envelope.rcpt_tos:
                if self._refusals.get(address, 0) > 0:
                    self._refusals[address] -= 1
                    return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message_id = str(message["Message-ID"] or "").strip("<>").partition("@")[0] or None
        delivery = Delivery(message_id, str(message["To"]), str(message["Subject"]))
        with self._lock:
            # Recorded before the 250 goes out: a sender killed now has been delivered to.
            self._messages.append(delivery)
        return "250 OK"

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._refusals.clear()

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@dataclass(frozen=True)
class HttpRequest:
    key: str
    to: str
    subject: str
    status: int


class ResendStub:
    """`POST /emails` as Resend answers it: idempotent by key, failing on purpose."""

    # A share of emails gets a 500 on its first request; some answers are slow, so that a
    # killed worker leaves a request the provider accepted but never heard back about. Like
    # Resend, a key already accepted is answered with the same id and not sent again, and a key
    # whose first request is still in flight gets 409 `concurrent_idempotent_requests`.

    def __init__(self, api_key: str, *, seed: int = 0, fail_share: float = 0.3) -> None:
        self.api_key = api_key
        self.seed = seed
        self.fail_share = fail_share
        self.slow_share = 0.3
        self._lock = threading.Lock()
        self.requests: list[HttpRequest] = []
        self.accepted: dict[str, tuple[str, Delivery]] = {}
        self._failed: set[str] = set()
        self._in_flight: set[str] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"resend+http://127.0.0.1:{self.server.server_address[1]}"

    def _draw(self, key: str, what: str) -> float:
        # Decided by the key, so the outcome does not depend on which worker asks first.
        return random.Random(f"{self.seed}:{what}:{key}").random()

    def answer(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        to, subject = ",".join(body.get("to", [])), str(body.get("subject", ""))
        with self._lock:
            if to and subject:
                status, reply = self._decide(key)
            else:  # as Resend refuses an email without them
                status, reply = (
                    422,
                    {"name": "validation_error", "message": "`to` and `subject` are required"},
                )
            self.requests.append(HttpRequest(key, to, subject, status))
        if status != 0:
            return status, reply
        if self._draw(key, "slow") < self.slow_share:
            time.sleep(0.25)
        with self._lock:
            self._in_flight.discard(key)
            provider_id = str(uuid.uuid4())
            self.accepted[key] = (
                provider_id,
                Delivery(key.removeprefix("automations-"), to, subject),
            )
        return 200, {"id": provider_id}

    def _decide(self, key: str) -> tuple[int, dict[str, Any]]:
        if key in self.accepted:
            return 200, {"id": self.accepted[key][0]}
        if key in self._in_flight:
            return 409, {"name": "concurrent_idempotent_requests", "message": "in flight"}
        if key not in self._failed and self._draw(key, "fail") < self.fail_share:
            self._failed.add(key)
            return 500, {"name": "internal_server_error", "message": "injected failure"}
        self._in_flight.add(key)
        return 0, {}

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return [delivery for _, delivery in self.accepted.values()]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.accepted.clear()
            self._failed.clear()
            self._in_flight.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if len(raw) < length:
                    # The worker was killed between the request's headers and the end of its
                    # body: a provider never acts on half a request, so nothing is sent.
                    self.close_connection = True
                    return
                key = self.headers.get("Idempotency-Key") or ""
                if self.path != "/emails" or self.headers.get("Authorization") != (
                    f"Bearer {stub.api_key}"
                ):
                    status, reply = 401, {"name": "unauthorized", "message": "bad key or path"}
                else:
                    status, reply = stub.answer(key, json.loads(raw or b"{}"))
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker was killed while we answered: it will retry the key

            def log_message(self, format: str, *args: Any) -> None:
                return None  # the requests list is the log

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
