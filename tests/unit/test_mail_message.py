"""The message every transport sends: one recipient, header values on one line, and the
one-click unsubscribe headers as raw ASCII at any length."""

from __future__ import annotations

import datetime as dt
import email.policy
import io
import uuid
from email import message_from_bytes
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Any

import pytest

from engine.errors import StepFailure
from engine.mail import message as message_module
from engine.mail.files import EML_POLICY
from engine.mail.message import (
    ALTERNATIVE_BOUNDARY,
    MAX_LINE,
    OutgoingEmail,
    checked_recipient,
    fold_raw,
    to_mime,
)
from engine.unsubscribe import unsubscribe_url

# A public URL of 120 characters, and a real token: the header runs past 78 characters.
PUBLIC_URL = "https://mail-preferences.customer-engagement.example.com/" + "p" * 63
LINK = unsubscribe_url(PUBLIC_URL, uuid.uuid4(), "a-secret-of-the-server")


def make_email(**changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "email_id": "3f1c8a52-0d5e-4c1b-9a0e-8f1f4b7e2d11",
        "idempotency_key": "k",
        "sender": "Acme <hello@acme.test>",
        "to": ("ada@example.test",),
        "subject": "Welcome, Ada",
        "html": None,
        "text": "Hello Ada",
        "unsubscribe_url": LINK,
    }
    return OutgoingEmail(**(fields | changes))


def smtp_bytes(email: OutgoingEmail, date: dt.datetime | None = None) -> bytes:
    """The bytes smtplib's send_message writes for the message (its generator, CRLF)."""
    out = io.BytesIO()
    BytesGenerator(out).flatten(to_mime(email, date=date), linesep="\r\n")
    return out.getvalue()


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_the_link_is_long() -> None:
    assert len(PUBLIC_URL) == 120
    assert len(f"List-Unsubscribe: <{LINK}>") > 2 * MAX_LINE


@pytest.mark.parametrize("render", [smtp_bytes, lambda e: to_mime(e).as_bytes(policy=EML_POLICY)])
def test_list_unsubscribe_goes_out_raw_on_one_line(render: Any) -> None:
    headers = header_block(render(make_email())).split(b"\r\n")
    assert f"List-Unsubscribe: <{LINK}>".encode() in headers
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
    assert not any(b"=?" in line for line in headers if line.startswith(b"List-"))


def test_fold_raw_folds_only_at_spaces_and_unfolds_to_the_value() -> None:
    value = " ".join([f"<{LINK}>,", "<mailto:unsubscribe@acme.test?subject=unsubscribe>"] * 3)
    folded = fold_raw("List-Unsubscribe", value)
    lines = folded.removesuffix("\r\n").split("\r\n")
    assert lines[0] == f"List-Unsubscribe: <{LINK}>,"  # the first word stays by the name
    assert all(line.startswith(" ") for line in lines[1:])
    assert folded.removesuffix("\r\n").replace("\r\n", "") == f"List-Unsubscribe: {value}"
    assert fold_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click") == (
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    )


@pytest.mark.parametrize(
    "value", ["<https://acme.test/ü>", "<https://acme.test/\r\nBcc: x>", "x" * 990]
)
def test_fold_raw_refuses_what_cannot_go_out_raw(value: str) -> None:
    with pytest.raises(StepFailure) as refused:
        fold_raw("List-Unsubscribe", value)
    assert refused.value.code == "invalid_header_value"


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"to": ("ada@example.test", "eve@evil.test")}, "invalid_address", "exactly one address"),
        ({"to": ("ada@example.test, eve@evil.test",)}, "invalid_address", "not a list"),
        ({"to": ("ada@example.test\r\nBcc: eve@evil.test",)}, "invalid_header_value", "To"),
        ({"subject": "Hi\r\nBcc: eve@evil.test"}, "invalid_header_value", "Subject"),
        ({"subject": "Hi\u2028there"}, "invalid_header_value", "U+2028"),
        ({"sender": "Acme <hello@acme.test>\nBcc: eve@evil.test"}, "invalid_header_value", "From"),
        ({"reply_to": ("a@acme.test\rBcc: eve@evil.test",)}, "invalid_header_value", "Reply-To"),
        ({"headers": {"X-Ref": "1\r\nBcc: eve@evil.test"}}, "invalid_header_value", "X-Ref"),
        ({"headers": {"X Ref": "1"}}, "invalid_header_value", "not a header name"),
        ({"unsubscribe_url": "https://acme.test/u\r\nBcc: x"}, "invalid_header_value", "List"),
        # Encoded words: the email library decodes them as the header is set, and wrote the
        # line break out (a Bcc: line of its own), or the comma and a second address.
        ({"subject": "Hi =?utf-8?q?x=0D=0ABcc:_eve@evil.test?="}, "invalid_header_value", "2047"),
        ({"subject": "Hi=?UTF-8?B?DQpCY2M6IGV2ZUBldmlsLnRlc3Q=?="}, "invalid_header_value", "2047"),
        (
            {"sender": "=?utf-8?q?eve=40evil.test=2C_Acme?= <hello@acme.test>"},
            "invalid_header_value",
            "From",
        ),
        (
            {"reply_to": ('"=?utf-8?q?x=0D=0ABcc:_eve@evil.test?=" <a@acme.test>',)},
            "invalid_header_value",
            "Reply-To",
        ),
        ({"to": ("=?utf-8?q?eve=40evil.test?=@example.test",)}, "invalid_header_value", "To"),
        # Without its closing ?=, and with spaces in it, the library still decodes one.
        ({"subject": "Hi =?utf-8?q?=0D=0ABcc: eve@evil.test"}, "invalid_header_value", "2047"),
        ({"reply_to": ("=?utf-8?q?=0A <a@acme.test>",)}, "invalid_header_value", "Reply-To"),
    ],
)
def test_every_transport_refuses_what_is_not_one_clean_recipient(
    changes: dict[str, Any], code: str, words: str
) -> None:
    email = make_email(**changes)
    with pytest.raises(StepFailure) as refused:
        checked_recipient(email)
    assert refused.value.code == code
    assert words in refused.value.message
    with pytest.raises(StepFailure):
        to_mime(email)


def test_the_recipient_is_the_only_to() -> None:
    assert checked_recipient(make_email()) == "ada@example.test"
    raw = smtp_bytes(make_email())
    assert b"\r\nTo: ada@example.test\r\n" in header_block(raw)


# Emails the shared headers must write exactly as the library writes them unaided: encoded
# display names, a long and a non-ASCII subject, several Reply-To addresses, extra headers,
# quoted-printable bodies, one body or both.
VARIED = [
    {},
    {"sender": '"Acme, Inc." <hello@acme.test>', "subject": "Ü" * 40, "html": "<p>Hi</p>"},
    {"sender": "Zoë from Acme <hello@acme.test>", "text": "Grüße\n" + "x" * 200},
    {"reply_to": ("a@acme.test", "Support Désk <b@acme.test>"), "headers": {"X-Ref": "é 42"}},
    {"subject": "word " * 30, "html": "<p>" + "long line " * 40 + "</p>", "text": None},
    {"sender": "hello@acme.test", "subject": "", "text": None, "html": "<b>x</b>"},
    # The same address as the first sender's, written otherwise: its own header, its own fold.
    {"sender": "Acme   <hello@acme.test>"},
    {"sender": '"Acme" <hello@acme.test>'},
]


def render_both(changes: dict[str, Any]) -> tuple[bytes, bytes]:
    """The email as this module writes it, twice over (the second with every shared header
    already made), and as the library's own header registry writes it."""
    when = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    email = make_email(**changes)
    ours = [smtp_bytes(email, date=when) for _ in range(2)]
    assert ours[0] == ours[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message_module, "POLICY", message_module._WirePolicy(cte_type="7bit"))
        library = smtp_bytes(email, date=when)
    return ours[0], library


@pytest.mark.parametrize("changes", VARIED)
def test_shared_headers_write_what_the_library_writes(changes: dict[str, Any]) -> None:
    ours, library = render_both(changes)
    assert ours == library


def test_the_parts_boundary_is_fixed_unless_a_body_holds_it() -> None:
    both = {"html": "<p>Hello Ada</p>"}
    assert f'boundary="{ALTERNATIVE_BOUNDARY}"'.encode() in smtp_bytes(make_email(**both))
    trap = f"Hello Ada\n--{ALTERNATIVE_BOUNDARY}\nContent-Type: text/html\n\n<p>forged</p>"
    raw = smtp_bytes(make_email(text=trap, **both))
    assert ALTERNATIVE_BOUNDARY.encode() not in header_block(raw)
    parsed = message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n").strip() == trap
    assert html is not None and html.get_content().strip() == "<p>Hello Ada</p>"
