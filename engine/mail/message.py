"""An email ready for a transport, and its rendering as an RFC 5322 message."""

from __future__ import annotations

import datetime as dt
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from engine.clock import SystemClock

# Non-ASCII or long lines go out quoted-printable, so no server has to accept 8-bit data.
POLICY = email.policy.default.clone(cte_type="7bit")
MAX_LINE = 78

# Headers the transport derives itself; letting extras replace them would break stable ids.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "reply-to",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email; `email_id` and `idempotency_key` stay the same across retries."""

    email_id: str
    idempotency_key: str
    sender: str
    to: tuple[str, ...]
    subject: str
    html: str | None
    text: str | None
    reply_to: tuple[str, ...] = ()
    unsubscribe_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.html is None and self.text is None:
            raise ValueError(f"email {self.email_id} has neither an html nor a text body")
        if not self.to:
            raise ValueError(f"email {self.email_id} has no recipient")
        message_id(self)  # the sender must have a domain to make a Message-ID from
        reserved = sorted(name for name in self.headers if name.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"email {self.email_id} may not set header(s) {', '.join(reserved)}")


def sender_address(email: OutgoingEmail) -> str:
    """The bare address of the sender, without its display name."""
    return parseaddr(email.sender)[1]


def message_id(email: OutgoingEmail) -> str:
    """The stable Message-ID `<email_id@sender-domain>` of an email."""
    _, _, domain = sender_address(email).rpartition("@")
    if not domain:
        raise ValueError(f"sender {email.sender!r} has no domain")
    return f"<{email.email_id}@{domain}>"


def added_headers(email: OutgoingEmail) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers (when there is a URL) plus the extra headers."""
    headers: dict[str, str] = {}
    if email.unsubscribe_url is not None:
        headers["List-Unsubscribe"] = f"<{email.unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    extras = {name.lower() for name in email.headers}
    # Header names are case-insensitive: an extra replaces ours rather than doubling it.
    headers = {name: value for name, value in headers.items() if name.lower() not in extras}
    return headers | dict(email.headers)


def to_mime(email: OutgoingEmail, *, date: dt.datetime | None = None) -> EmailMessage:
    """Render an email as a MIME message with a stable Message-ID."""
    message = EmailMessage(policy=POLICY)
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    message["Subject"] = email.subject
    if email.reply_to:
        message["Reply-To"] = ", ".join(email.reply_to)
    message["Date"] = format_datetime(date or SystemClock().now())
    message["Message-ID"] = message_id(email)
    for name, value in added_headers(email).items():
        message[name] = value
    if email.text is not None:
        message.set_content(email.text, cte=_transfer_encoding(email.text))
        if email.html is not None:
            message.add_alternative(email.html, subtype="html", cte=_transfer_encoding(email.html))
    elif email.html is not None:
        message.set_content(email.html, subtype="html", cte=_transfer_encoding(email.html))
    return message


def _transfer_encoding(body: str) -> str | None:
    """None (plain 7bit) when the body is short-lined ASCII, else quoted-printable."""
    if body.isascii() and all(len(line) <= MAX_LINE for line in body.splitlines()):
        return None
    # Quoted-printable over base64: the mostly-ASCII bodies of email stay readable.
    return "quoted-printable"
