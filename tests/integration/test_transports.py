"""Email transports against real protocols: an in-process SMTP server and a local HTTP API."""

from __future__ import annotations

import email
import email.policy
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.errors import StepFailure, TransientStepFailure
from engine.mail import OutgoingEmail, transport_from_url
from engine.mail.files import ConsoleTransport, FileTransport
from engine.mail.resend_http import ResendHttpTransport
from engine.mail.smtp import SmtpTransport
from engine.unsubscribe import unsubscribe_url
from tests.integration.harness import free_port

API_KEY = "re_test_secret_0123456789"
SMTP_PASSWORD = "hunter2-smtp-secret"


def make_email(**changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "email_id": "3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11",
        "idempotency_key": "run-1/send-welcome",
        "sender": "Acme <hello@acme.test>",
        "to": ("ada@example.test",),
        "subject": "Welcome, Ada",
        "html": "<p>Hello <b>Ada</b></p>",
        "text": "Hello Ada",
        "reply_to": ("support@acme.test",),
        "unsubscribe_url": "https://acme.test/unsubscribe/abc",
        "headers": {"X-Entity-Ref-ID": "42"},
    }
    return OutgoingEmail(**(fields | changes))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


# --- SMTP ---------------------------------------------------------------------------------


@dataclass
class Received:
    peer: tuple[str, int]
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, _: Any
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        raw = envelope.original_content
        received = Received(session.peer, envelope.mail_from, envelope.rcpt_tos, parse(raw), raw)
        self.received.append(received)
        return "250 Message accepted for delivery"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # unhandled failure: aiosmtpd answers 535


class SmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller = self._start()

    def _start(self) -> Controller:
        controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,
        )
        controller.start()
        return controller

    def restart(self) -> None:
        self.controller.stop()
        self.controller = self._start()

    def url(self, query: str = "timeout=5") -> str:
        return f"smtp://127.0.0.1:{self.port}?{query}"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.controller.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> Iterator[SmtpTransport]:
    transport = SmtpTransport(smtp_server.url())
    yield transport
    transport.close()


def test_smtp_delivers_the_rendered_message(smtp: SmtpTransport, smtp_server: SmtpServer) -> None:
    assert smtp.send(make_email()) == "<3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11@acme.test>"

    [got] = smtp_server.handler.received
    assert got.mail_from == "hello@acme.test"
    assert got.rcpt_tos == ["ada@example.test"]
    message = got.message
    assert message["From"] == "Acme <hello@acme.test>"
    assert message["To"] == "ada@example.test"
    assert message["Subject"] == "Welcome, Ada"
    assert message["Reply-To"] == "support@acme.test"
    assert message["Date"] is not None
    assert message["Message-ID"] == "<3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11@acme.test>"
    assert message["List-Unsubscribe"] == "<https://acme.test/unsubscribe/abc>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-Entity-Ref-ID"] == "42"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "Hello Ada"
    assert html is not None and html.get_content().strip() == "<p>Hello <b>Ada</b></p>"


def test_smtp_reuses_one_connection_and_survives_a_server_restart(
    smtp: SmtpTransport, smtp_server: SmtpServer
) -> None:
    smtp.send(make_email())
    smtp.send(make_email(email_id="second"))
    smtp_server.restart()  # drops the connection the transport keeps open
    smtp.send(make_email(email_id="third"))

    peers = [got.peer for got in smtp_server.handler.received]
    assert len(peers) == 3
    assert peers[0] == peers[1]
    assert peers[2] != peers[1]
    assert smtp_server.handler.received[2].message["Message-ID"] == "<third@acme.test>"


def test_smtp_refused_recipient_is_permanent(smtp: SmtpTransport, smtp_server: SmtpServer) -> None:
    smtp_server.handler.rcpt_replies["nobody@example.test"] = "550 No such user"
    with pytest.raises(StepFailure) as failure:
        smtp.send(make_email(to=("nobody@example.test",)))
    assert not isinstance(failure.value, TransientStepFailure)
    assert failure.value.code == "smtp_rejected"
    assert "550 No such user" in failure.value.message
    smtp.send(make_email())  # the transport is still usable
    assert len(smtp_server.handler.received) == 1


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_smtp_4xx_is_transient(smtp: SmtpTransport, smtp_server: SmtpServer, stage: str) -> None:
    if stage == "RCPT":
        smtp_server.handler.rcpt_replies["ada@example.test"] = "451 Try again later"
    else:
        smtp_server.handler.data_reply = "451 Try again later"
    with pytest.raises(TransientStepFailure) as failure:
        smtp.send(make_email())
    assert failure.value.code == "smtp_unavailable"
    assert "451 Try again later" in failure.value.message


def test_smtp_closed_port_is_transient_and_quick() -> None:
    port = free_port()
    transport = SmtpTransport(f"smtp://127.0.0.1:{port}?timeout=5")
    started = time.monotonic()
    with pytest.raises(TransientStepFailure) as failure:
        transport.send(make_email())
    assert time.monotonic() - started < 2
    assert failure.value.message == f"SMTP server 127.0.0.1:{port} refused the connection"
    assert failure.value.code == "smtp_unavailable"
    transport.close()


def test_smtp_silent_server_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        transport = SmtpTransport(f"smtp://127.0.0.1:{silent.getsockname()[1]}?timeout=0.2")
        with pytest.raises(TransientStepFailure) as failure:
            transport.send(make_email())
        transport.close()
    assert failure.value.message.endswith("did not answer within 0.2 s")


def test_smtp_login_and_wrong_password(smtp_server: SmtpServer) -> None:
    good = SmtpTransport(f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{smtp_server.port}")
    bad = SmtpTransport(f"smtp://mailer:wrong-{SMTP_PASSWORD}@127.0.0.1:{smtp_server.port}")
    try:
        good.send(make_email())
        with pytest.raises(StepFailure) as failure:
            bad.send(make_email())
    finally:
        good.close()
        bad.close()
    assert len(smtp_server.handler.received) == 1
    assert not isinstance(failure.value, TransientStepFailure)
    assert "535" in failure.value.message
    assert SMTP_PASSWORD not in failure.value.message
    assert SMTP_PASSWORD not in repr(good.settings)


# A public URL of 120 characters and a real token (engine/unsubscribe.py): well past 78.
LONG_PUBLIC_URL = "https://mail-preferences.customer-engagement.example.com/" + "p" * 63
LONG_LINK = unsubscribe_url(LONG_PUBLIC_URL, uuid.uuid4(), "a-server-secret-of-some-length")


def test_smtp_list_unsubscribe_is_raw_on_the_wire(
    smtp: SmtpTransport, smtp_server: SmtpServer
) -> None:
    assert len(LONG_PUBLIC_URL) == 120
    smtp.send(make_email(unsubscribe_url=LONG_LINK))

    [got] = smtp_server.handler.received
    head = got.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    # The bytes the server received, not Python's reading of them (which decodes =?utf-8?...).
    assert f"List-Unsubscribe: <{LONG_LINK}>".encode() in head
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    assert not [line for line in head if b"=?" in line and b"Subject" not in line]


def test_smtp_one_rcpt_to_per_email(smtp: SmtpTransport, smtp_server: SmtpServer) -> None:
    smtp.send(make_email(to=("ada@example.test",)))
    for to in [("ada@example.test", "eve@evil.test"), ("ada@example.test, eve@evil.test",)]:
        with pytest.raises(StepFailure) as refused:
            smtp.send(make_email(to=to))
        assert refused.value.code == "invalid_address"
    # Headers never widen the envelope: a Bcc slipped into a header value is refused.
    with pytest.raises(StepFailure) as injected:
        smtp.send(make_email(subject="Hi\r\nBcc: eve@evil.test"))
    assert injected.value.code == "invalid_header_value"
    [got] = smtp_server.handler.received
    assert got.rcpt_tos == ["ada@example.test"]


# --- Resend HTTP API ----------------------------------------------------------------------


class FakeResendApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeResendHandler)
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.raw_bodies: list[bytes] = []
        self.replies: list[tuple[int, Any]] = []
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a slow reply is expected, not a failure


class FakeResendHandler(BaseHTTPRequestHandler):
    server: FakeResendApi

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.raw_bodies.append(raw)
        self.server.requests.append((self.path, dict(self.headers.items()), json.loads(raw)))
        status, reply = self.server.replies.pop(0) if self.server.replies else (200, {"id": "re-1"})
        time.sleep(self.server.delay)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[FakeResendApi]:
    server = FakeResendApi()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def resend(api: FakeResendApi) -> Iterator[ResendHttpTransport]:
    transport = ResendHttpTransport(API_KEY, base_url=api.url)
    yield transport
    transport.close()


def test_resend_posts_the_email(resend: ResendHttpTransport, api: FakeResendApi) -> None:
    api.replies.append((200, {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}))
    assert resend.send(make_email()) == "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"

    [(path, headers, body)] = api.requests
    assert path == "/emails"
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["Idempotency-Key"] == "run-1/send-welcome"
    assert body == {
        "from": "Acme <hello@acme.test>",
        "to": ["ada@example.test"],
        "subject": "Welcome, Ada",
        "html": "<p>Hello <b>Ada</b></p>",
        "text": "Hello Ada",
        "reply_to": ["support@acme.test"],
        "headers": {
            "List-Unsubscribe": "<https://acme.test/unsubscribe/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Entity-Ref-ID": "42",
        },
    }


def test_resend_list_unsubscribe_headers_are_raw(
    resend: ResendHttpTransport, api: FakeResendApi
) -> None:
    resend.send(make_email(unsubscribe_url=LONG_LINK))
    [raw] = api.raw_bodies
    headers = json.loads(raw)["headers"]
    assert headers["List-Unsubscribe"] == f"<{LONG_LINK}>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"=?" not in raw and b"\\r" not in raw and b"\\n" not in raw
    assert json.loads(raw)["to"] == ["ada@example.test"]


def test_resend_omits_absent_fields(resend: ResendHttpTransport, api: FakeResendApi) -> None:
    resend.send(make_email(html=None, reply_to=(), unsubscribe_url=None, headers={}))
    [(_, _, body)] = api.requests
    assert set(body) == {"from", "to", "subject", "text"}


def test_resend_retry_repeats_the_idempotency_key(
    resend: ResendHttpTransport, api: FakeResendApi
) -> None:
    api.replies.append((500, {"name": "internal_server_error", "message": "Boom"}))
    outgoing = make_email()
    with pytest.raises(TransientStepFailure) as failure:
        resend.send(outgoing)
    assert failure.value.message == "Resend API answered 500: Boom"
    assert resend.send(outgoing) == "re-1"
    [(_, first, first_body), (_, second, second_body)] = api.requests
    assert first["Idempotency-Key"] == second["Idempotency-Key"] == "run-1/send-welcome"
    assert first_body == second_body


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (500, "internal_server_error"),
        (503, "service_unavailable"),
        (429, "rate_limit_exceeded"),
        (409, "concurrent_idempotent_requests"),
    ],
)
def test_resend_transient_answers(
    resend: ResendHttpTransport, api: FakeResendApi, status: int, name: str
) -> None:
    api.replies.append((status, {"name": name, "message": f"key {API_KEY} said no"}))
    with pytest.raises(TransientStepFailure) as failure:
        resend.send(make_email())
    assert failure.value.code == "provider_unavailable"
    assert failure.value.message == f"Resend API answered {status}: key [redacted] said no"


@pytest.mark.parametrize("status", [400, 403, 409, 422])
def test_resend_rejection_is_permanent(
    resend: ResendHttpTransport, api: FakeResendApi, status: int
) -> None:
    api.replies.append((status, {"name": "validation_error", "message": "Invalid `to` field."}))
    with pytest.raises(StepFailure) as failure:
        resend.send(make_email())
    assert not isinstance(failure.value, TransientStepFailure)
    assert failure.value.code == "provider_rejected"
    assert failure.value.message == f"Resend API answered {status}: Invalid `to` field."


def test_resend_network_failures_are_transient(api: FakeResendApi) -> None:
    closed = ResendHttpTransport(API_KEY, base_url=f"http://127.0.0.1:{free_port()}")
    slow = ResendHttpTransport(API_KEY, base_url=api.url, timeout=0.1)
    api.delay = 0.5
    try:
        with pytest.raises(TransientStepFailure) as refused:
            closed.send(make_email())
        with pytest.raises(TransientStepFailure) as timed_out:
            slow.send(make_email())
    finally:
        closed.close()
        slow.close()
    assert "could not be reached" in refused.value.message
    assert timed_out.value.message == f"Resend API at {api.url} did not answer within 0.1 s"
    for failure in (refused.value, timed_out.value):
        assert API_KEY not in str(failure) and failure.code == "provider_unavailable"


# --- Files and console ----------------------------------------------------------------------


def test_file_transport_keeps_every_attempt(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # absent: the transport creates it
    transport = FileTransport(outbox)
    assert transport.send(make_email()) == "<3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11@acme.test>"
    transport.send(make_email(subject="Welcome again"))  # a resend of the same email
    transport.send(make_email(email_id="other", html=None))

    assert sorted(p.name for p in outbox.iterdir()) == [
        "3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11.1.eml",
        "3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11.2.eml",
        "other.1.eml",
    ]
    first = parse((outbox / "3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11.1.eml").read_bytes())
    second = parse((outbox / "3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11.2.eml").read_bytes())
    assert (first["Subject"], second["Subject"]) == ("Welcome, Ada", "Welcome again")
    assert first["Message-ID"] == second["Message-ID"]  # one email, sent twice: visible here
    assert second["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text_only = parse((outbox / "other.1.eml").read_bytes())
    assert text_only.get_content_type() == "text/plain"


def test_file_transport_never_overwrites_under_concurrent_sends(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path)
    threads = [threading.Thread(target=transport.send, args=(make_email(),)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11.{n}.eml" for n in range(1, 9))
    assert all(parse(p.read_bytes())["Subject"] == "Welcome, Ada" for p in tmp_path.iterdir())


def test_console_transport_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    ConsoleTransport(stream).send(make_email())
    assert "Subject: Welcome, Ada" in stream.getvalue()
    assert "<3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11@acme.test>" in stream.getvalue()
    ConsoleTransport().send(make_email(subject="To stdout"))
    assert "Subject: To stdout" in capsys.readouterr().out


# --- transport_from_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        ("smtp://mailpit:1025", SmtpTransport, ("smtp", "mailpit", 1025, 10.0)),
        ("smtps://u:p%40ss@mail.test?timeout=3", SmtpTransport, ("smtps", "mail.test", 465, 3.0)),
        ("smtp+starttls://mail.test", SmtpTransport, ("smtp+starttls", "mail.test", 587, 10.0)),
        ("resend+https://api.resend.com", ResendHttpTransport, "https://api.resend.com"),
        ("resend+http://127.0.0.1:8025", ResendHttpTransport, "http://127.0.0.1:8025"),
        ("file:///var/mail/outbox", FileTransport, Path("/var/mail/outbox")),
        ("console://", ConsoleTransport, None),
    ],
)
def test_transport_from_url(url: str, kind: type, expected: object) -> None:
    transport = transport_from_url(url, api_key=API_KEY)
    try:
        assert isinstance(transport, kind)
        if isinstance(transport, SmtpTransport):
            settings = transport.settings
            assert (settings.scheme, settings.host, settings.port, settings.timeout) == expected
        elif isinstance(transport, ResendHttpTransport):
            assert transport.base_url == expected
        elif isinstance(transport, FileTransport):
            assert transport.directory == expected
    finally:
        transport.close()


def test_smtp_url_credentials_are_unquoted() -> None:
    settings = SmtpTransport("smtps://u%2Bme:p%40ss@mail.test").settings
    assert (settings.username, settings.password) == ("u+me", "p@ss")


def test_transport_from_url_errors() -> None:
    with pytest.raises(ValueError, match="AUTOMATIONS_EMAIL_API_KEY"):
        transport_from_url("resend+https://api.resend.com")
    with pytest.raises(ValueError, match=r"smtp://.*console://") as unknown:
        transport_from_url("sendgrid://user:topsecret@api.sendgrid.test")
    assert "topsecret" not in str(unknown.value)
    with pytest.raises(ValueError, match="unknown option"):
        transport_from_url("smtp://mail.test?tls=yes")
    # httpx sent a password in the URL as Basic auth instead of the key, and quoted it.
    with pytest.raises(ValueError, match="takes no user or password") as userinfo:
        transport_from_url("resend+https://ops:topsecret@api.resend.com", api_key=API_KEY)
    assert "top" not in str(userinfo.value)
    with pytest.raises(ValueError, match="invalid port") as cut:  # `/` ends the host: ":top"
        transport_from_url("resend+https://ops:top/secret@api.resend.com", api_key=API_KEY)
    assert "top" not in str(cut.value)
    with pytest.raises(ValueError, match="invalid port"):
        transport_from_url("resend+https://api.resend.com:99999", api_key=API_KEY)
    # The header was refused at each send, quoted, key and all, into the step's error.
    for stray in ("\r", "\n", " ", "\u00e9"):
        with pytest.raises(ValueError, match="AUTOMATIONS_EMAIL_API_KEY") as unfit:
            transport_from_url("resend+https://api.resend.com", api_key=API_KEY + stray)
        assert API_KEY not in str(unfit.value)


# --- one recipient, every transport ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["smtp", "resend", "file", "console"])
@pytest.mark.parametrize(
    "to",
    [
        ("ada@example.test", "eve@evil.test"),
        ("ada@example.test, eve@evil.test",),
        ("ada@example.test\r\nBcc: eve@evil.test",),
        ("@example.test",),
    ],
)
def test_every_transport_refuses_anything_but_one_address(
    kind: str,
    to: tuple[str, ...],
    smtp_server: SmtpServer,
    api: FakeResendApi,
    tmp_path: Path,
) -> None:
    transport: Any = {
        "smtp": lambda: SmtpTransport(smtp_server.url()),
        "resend": lambda: ResendHttpTransport(API_KEY, base_url=api.url),
        "file": lambda: FileTransport(tmp_path),
        "console": lambda: ConsoleTransport(io.StringIO()),
    }[kind]()
    try:
        with pytest.raises(StepFailure) as refused:
            transport.send(make_email(to=to))
    finally:
        transport.close()
    assert refused.value.code in {"invalid_address", "invalid_header_value"}
    assert not isinstance(refused.value, TransientStepFailure)
    assert smtp_server.handler.received == [] and api.requests == []
    assert list(tmp_path.iterdir()) == []
