"""Email over SMTP: one connection kept open per transport, reopened when the server drops it."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from engine.errors import StepFailure, TransientStepFailure
from engine.mail.base import SMTP_REJECTED, SMTP_UNAVAILABLE
from engine.mail.message import (
    OutgoingEmail,
    checked_recipient,
    message_id,
    sender_address,
    to_mime,
)

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}
DEFAULT_TIMEOUT = 10.0
# "Service not available, closing transmission channel": what a server says when it goes away.
SERVICE_CLOSING = 421


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to connect, parsed from `smtp[s|+starttls]://[user:password@]host:port`."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Parse an SMTP URL; error messages never repeat it, as it may hold a password."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"SMTP URL scheme must be one of {', '.join(DEFAULT_PORTS)}")
        if not parts.hostname:
            raise ValueError("SMTP URL has no host")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError("SMTP URL has an invalid port") from None
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"timeout"})
        if unknown:
            raise ValueError(f"SMTP URL has unknown option(s) {', '.join(unknown)}")
        timeout = DEFAULT_TIMEOUT
        if "timeout" in query:
            try:
                timeout = float(query["timeout"][-1])
            except ValueError:
                raise ValueError("SMTP URL option timeout must be a number of seconds") from None
            if timeout <= 0:
                raise ValueError("SMTP URL option timeout must be positive")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            timeout=timeout,
        )

    @property
    def address(self) -> str:
        """`host:port`, for messages."""
        return f"{self.host}:{self.port}"


class SmtpTransport:
    """Sends through an SMTP server, reusing one connection across sends."""

    name = "smtp"

    def __init__(self, url: str) -> None:
        self.settings = SmtpSettings.from_url(url)
        self._connection: smtplib.SMTP | None = None
        # smtplib connections are not thread-safe; one send at a time per transport.
        self._lock = threading.Lock()

    def send(self, email: OutgoingEmail) -> str:
        """Send one email and return its Message-ID."""
        message = to_mime(email)
        # The envelope is given, not read from the headers: one RCPT TO, whatever they say.
        envelope = (sender_address(email), [checked_recipient(email)])
        with self._lock:
            try:
                refused = self._deliver(message, *envelope)
            except (smtplib.SMTPException, OSError) as exc:
                # After any failure the dialogue state is unknown: start the next send afresh.
                self._discard()
                raise self._failure(exc) from exc
        if refused:
            # Others got it, so failing the step (and sending again) would duplicate it.
            log.warning(
                "SMTP server %s refused %d of %d recipients of email %s: %s",
                self.settings.address,
                len(refused),
                len(email.to),
                email.email_id,
                _describe_refusals(refused),
            )
        return message_id(email)

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is None:
                return
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the server is gone already; closing our end is all that is left
            finally:
                connection.close()

    def _deliver(
        self, message: EmailMessage, sender: str, recipients: list[str]
    ) -> dict[str, tuple[int, bytes]]:
        reused = self._connection is not None
        connection = self._connection or self._connect()
        try:
            return connection.send_message(message, sender, recipients)
        except smtplib.SMTPServerDisconnected as exc:
            # A slow server is not a dropped one; resending could deliver the email twice.
            if not reused or _timed_out(exc):
                raise
        except smtplib.SMTPResponseException as exc:
            if not reused or exc.smtp_code != SERVICE_CLOSING:
                raise
        # A kept connection went stale (idle timeout, server restart): reconnect once.
        self._discard()
        return self._connect().send_message(message, sender, recipients)

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        connection = (
            smtplib.SMTP_SSL(timeout=settings.timeout, context=ssl.create_default_context())
            if settings.scheme == "smtps"
            else smtplib.SMTP(timeout=settings.timeout)
        )
        try:
            code, reply = connection.connect(settings.host, settings.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            if settings.scheme == "smtp+starttls":
                connection.starttls(context=ssl.create_default_context())
            if settings.username is not None:
                connection.login(settings.username, settings.password or "")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _failure(self, exc: smtplib.SMTPException | OSError) -> StepFailure:
        where = f"SMTP server {self.settings.address}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            text = f"{where} refused {_describe_refusals(exc.recipients)}"
            return _by_reply_code(max(codes, default=0), text)
        if isinstance(exc, smtplib.SMTPResponseException):
            text = f"{where} answered {exc.smtp_code} {_one_line(exc.smtp_error)}"
            return _by_reply_code(exc.smtp_code, text)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return StepFailure(f"{where}: {_one_line(str(exc))}", code=SMTP_REJECTED)
        if isinstance(exc, smtplib.SMTPServerDisconnected) and not _timed_out(exc):
            text = f"{where} closed the connection"
        elif isinstance(exc, ConnectionRefusedError):
            text = f"{where} refused the connection"
        elif _timed_out(exc):
            text = f"{where} did not answer within {self.settings.timeout:g} s"
        elif isinstance(exc, ssl.SSLError):
            text = f"{where}: TLS failed: {exc.reason or exc}"
        elif isinstance(exc, OSError):
            text = f"{where} could not be reached: {exc.strerror or exc}"
        else:
            text = f"{where}: {_one_line(str(exc))}"
        return TransientStepFailure(text, code=SMTP_UNAVAILABLE)


def _timed_out(exc: BaseException) -> bool:
    """True for a timeout, also when smtplib reported it as a disconnection."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _by_reply_code(code: int, text: str) -> StepFailure:
    """5xx replies are permanent; 4xx and anything unexpected may pass."""
    if 500 <= code < 600:
        return StepFailure(text, code=SMTP_REJECTED)
    return TransientStepFailure(text, code=SMTP_UNAVAILABLE)


def _describe_refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    """`recipient a@x: 550 No such user (and 2 more)`."""
    recipient, (code, reply) = next(iter(refused.items()))
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    return f"recipient {recipient}: {code} {_one_line(reply)}{more}"


def _one_line(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
