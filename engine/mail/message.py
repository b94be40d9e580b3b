"""An email ready for a transport, and its rendering as an RFC 5322 message."""

from __future__ import annotations

import datetime as dt
import email.policy
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from engine.addresses import AddressError, parse_address
from engine.clock import SystemClock
from engine.errors import StepFailure
from engine.headers import INVALID_HEADER_VALUE, control_character, header_problem

MAX_LINE = 78
INVALID_ADDRESS = "invalid_address"
# RFC 5322 field names: printable ASCII but the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# RFC 5322 2.1.1: no line of a message may be longer, folded or not.
MAX_LINE_HARD = 998
# Mail clients read these raw (RFC 2369, RFC 8058): never as encoded words, folded at spaces only.
RAW_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

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


# The boundary of the text and html parts. The library would draw one at random and compile a
# pattern to look for it in the bodies, for every email. This one is the same for every email
# (so its Content-Type is a shared header), used unless a body holds it; "=_" cannot begin a
# line of quoted-printable, where a literal "=" is written "=3D".
ALTERNATIVE_BOUNDARY = "=_alternative_0d6f1e7a"

# Headers whose values are the same from one email to the next (a sender, the MIME structure).
# The recipient's own (To, Subject, extras) are never kept.
SHARED_HEADERS = frozenset(
    {"from", "reply-to", "mime-version", "content-type", "content-transfer-encoding"}
)
# The policies whose folds a shared header keeps: the wire's, the .eml files', a spare.
MAX_FOLDS_KEPT = 3


class _SharedHeaders(HeaderRegistry):
    """The library's header registry, without the work it repeats for every header it makes.

    Its lookup builds a new class for each header set or read (`type(...)` in `__getitem__`),
    and each value is parsed anew: about two thirds of the CPU an email's rendering took
    (0.9 ms of 1.3). The classes are kept per name, and the parsed headers of SHARED_HEADERS
    per name and value, with their folded bytes. A header is an immutable str whose parse tree
    folding only reads (a message folds the same one at each flatten), so emails may share it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._shared = functools.lru_cache(maxsize=512)(self._make_shared)

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._classes.clear()
        self._shared.cache_clear()

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: str) -> BaseHeader:
        if type(value) is str and name.lower() in SHARED_HEADERS:
            shared: BaseHeader = self._shared(name, value)
            return shared
        made: BaseHeader = super().__call__(name, value)
        return made

    def _make_shared(self, name: str, value: str) -> BaseHeader:
        made: BaseHeader = super().__call__(name, value)
        # Its folded bytes, kept on it per policy (_WirePolicy.fold_binary): a header folds the
        # same way each time, and this one is written in every email.
        made._folds = {}  # type: ignore[attr-defined]
        return made


class _WirePolicy(email.policy.EmailPolicy):
    """The default policy, but RAW_HEADERS go out as their ASCII text, folded at spaces only.

    The library folds a header past 78 characters, and a value without a space to fold at
    (a long unsubscribe URL) becomes an RFC 2047 encoded word `=?utf-8?q?=3Chttps...?=`, which
    Gmail and Yahoo do not decode there: their one-click unsubscribe would not be seen.
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in RAW_HEADERS:
            return fold_raw(name, str(value), self.linesep)
        folded: str = super().fold(name, value)
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        lowered = name.lower()
        if lowered in RAW_HEADERS:
            return fold_raw(name, str(value), self.linesep).encode("ascii")
        folds: dict[_WirePolicy, bytes] | None = getattr(value, "_folds", None)
        known = folds.get(self) if folds is not None else None
        if known is not None:
            return known
        folded: bytes = super().fold_binary(name, value)
        # A policy is immutable and hashed by identity; smtplib clones one per SMTPUTF8 send,
        # so a header keeps the folds of a few policies only.
        if folds is not None and len(folds) < MAX_FOLDS_KEPT:
            folds[self] = folded
        return folded


# Non-ASCII or long lines go out quoted-printable, so no server has to accept 8-bit data.
POLICY = _WirePolicy(cte_type="7bit", header_factory=_SharedHeaders())


def fold_raw(name: str, value: str, linesep: str = "\r\n") -> str:
    """`Name: value` as ASCII, broken into lines of up to 78 characters only where it has a
    space (RFC 5322 folding); a word is never split. StepFailure when it cannot go out so."""
    if not value.isascii() or control_character(value) is not None:
        raise StepFailure(
            f"The {name} header must be printable ASCII: {value[:60]!r}", code=INVALID_HEADER_VALUE
        )
    lines = [f"{name}:"]
    for index, word in enumerate(value.split(" ")):
        # The first word stays beside the name, where clients look for it.
        if index and len(lines[-1]) + 1 + len(word) > MAX_LINE:
            lines.append("")
        lines[-1] += f" {word}"
    if max(len(line) for line in lines) > MAX_LINE_HARD:
        raise StepFailure(
            f"The {name} header has a word longer than {MAX_LINE_HARD - len(name) - 2} characters",
            code=INVALID_HEADER_VALUE,
        )
    return linesep.join(lines) + linesep


def sender_address(email: OutgoingEmail) -> str:
    """The bare address of the sender, without its display name."""
    return _bare_address(email.sender)


@functools.lru_cache(maxsize=256)
def _bare_address(sender: str) -> str:
    # Asked four times per email, of a sender most emails share: parsing it costs 45 µs.
    return parseaddr(sender)[1]


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


def checked_recipient(email: OutgoingEmail) -> str:
    """The one address the email goes to, once every header value is found fit to send.

    Every transport asks, whatever its caller checked: a recipient is exactly one address,
    and no header value holds a line break (StepFailure, never a partial send).
    """
    headers = [("From", email.sender), ("Subject", email.subject)]
    headers += [("To", address) for address in email.to]
    headers += [("Reply-To", address) for address in email.reply_to]
    for name, value in [*headers, *added_headers(email).items()]:
        if not _HEADER_NAME.fullmatch(name):
            raise StepFailure(f"{name!r} is not a header name", code=INVALID_HEADER_VALUE)
        problem = header_problem(value)
        if problem is not None:
            text = f"The {name} header would hold {problem}; nothing was sent"
            raise StepFailure(text, code=INVALID_HEADER_VALUE)
    if len(email.to) != 1:
        text = (
            f"An email goes to exactly one address, and email {email.email_id} has {len(email.to)}"
        )
        raise StepFailure(text, code=INVALID_ADDRESS)
    try:
        return parse_address(email.to[0])
    except AddressError as error:
        raise StepFailure(
            f"The To address {email.to[0]!r} {error.rule}", code=INVALID_ADDRESS
        ) from None


def to_mime(email: OutgoingEmail, *, date: dt.datetime | None = None) -> EmailMessage:
    """Render an email as a MIME message with a stable Message-ID."""
    recipient = checked_recipient(email)
    message = EmailMessage(policy=POLICY)
    message["From"] = email.sender
    message["To"] = recipient
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
            if ALTERNATIVE_BOUNDARY not in email.text and ALTERNATIVE_BOUNDARY not in email.html:
                message.set_boundary(ALTERNATIVE_BOUNDARY)
    elif email.html is not None:
        message.set_content(email.html, subtype="html", cte=_transfer_encoding(email.html))
    return message


def _transfer_encoding(body: str) -> str | None:
    """None (plain 7bit) when the body is short-lined ASCII, else quoted-printable."""
    if body.isascii() and all(len(line) <= MAX_LINE for line in body.splitlines()):
        return None
    # Quoted-printable over base64: the mostly-ASCII bodies of email stay readable.
    return "quoted-printable"
