"""Email through Resend's HTTP API (or anything that speaks it), with an Idempotency-Key."""

from __future__ import annotations

import json
from typing import Any

import httpx

from engine.errors import StepFailure, TransientStepFailure
from engine.mail.base import PROVIDER_REJECTED, PROVIDER_UNAVAILABLE
from engine.mail.message import OutgoingEmail, added_headers, checked_recipient

DEFAULT_BASE_URL = "https://api.resend.com"
DEFAULT_TIMEOUT = 10.0
TOO_MANY_REQUESTS = 429
# Resend's 409 while the first request with the same Idempotency-Key is still in flight.
CONCURRENT_IDEMPOTENT_REQUESTS = "concurrent_idempotent_requests"
MAX_REPLY_CHARS = 300


class ResendHttpTransport:
    """Sends with `POST {base_url}/emails`, one HTTP client kept across sends."""

    name = "resend"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not api_key:
            raise ValueError("the Resend API key is empty")
        if not (api_key.isascii() and api_key.isprintable()) or " " in api_key:
            # A newline read with it from a file: every send would fail, its error quoting
            # the header, key and all, into the step's error and the log. Never repeated here.
            raise ValueError(
                "AUTOMATIONS_EMAIL_API_KEY holds a space, a line break or a character that is "
                "not printable ASCII (read from a file with its newline?)"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def send(self, email: OutgoingEmail) -> str:
        """Send one email and return the id the API gave it."""
        where = f"Resend API at {self.base_url}"
        try:
            response = self._client.post(
                "/emails",
                json=request_body(email),
                headers={"Idempotency-Key": email.idempotency_key},
            )
        except httpx.TimeoutException as exc:
            text = f"{where} did not answer within {self.timeout:g} s"
            raise TransientStepFailure(self._redact(text), code=PROVIDER_UNAVAILABLE) from exc
        except httpx.TransportError as exc:
            text = f"{where} could not be reached: {exc}"
            raise TransientStepFailure(self._redact(text), code=PROVIDER_UNAVAILABLE) from exc
        if response.is_success:
            email_id = _json(response).get("id")
            if not isinstance(email_id, str) or not email_id:
                # The key makes a retry return the same answer without sending twice.
                text = f"Resend API answered {response.status_code} without an email id"
                raise TransientStepFailure(text, code=PROVIDER_UNAVAILABLE)
            return email_id
        raise self._failure(response)

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._client.close()

    def _failure(self, response: httpx.Response) -> StepFailure:
        status = response.status_code
        body = _json(response)
        reply = body.get("message")
        if not isinstance(reply, str) or not reply:
            reply = response.text or response.reason_phrase
        text = self._redact(f"Resend API answered {status}: {_one_line(reply)}")
        if (
            status == TOO_MANY_REQUESTS
            or status >= 500
            or body.get("name") == CONCURRENT_IDEMPOTENT_REQUESTS
        ):
            return TransientStepFailure(text, code=PROVIDER_UNAVAILABLE)
        return StepFailure(text, code=PROVIDER_REJECTED)

    def _redact(self, text: str) -> str:
        # Belt and braces: no reply or network error should echo the key, but if one does
        # it must not reach the step's error, which operators and the API can read.
        return text.replace(self._api_key, "[redacted]")


def request_body(email: OutgoingEmail) -> dict[str, Any]:
    """The JSON body of `POST /emails` for an email, absent fields omitted."""
    recipient = checked_recipient(email)
    body: dict[str, Any] = {"from": email.sender, "to": [recipient], "subject": email.subject}
    if email.html is not None:
        body["html"] = email.html
    if email.text is not None:
        body["text"] = email.text
    if email.reply_to:
        body["reply_to"] = list(email.reply_to)
    headers = added_headers(email)
    if headers:
        body["headers"] = headers
    return body


def _json(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is not one (a proxy's HTML error page)."""
    try:
        decoded = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REPLY_CHARS else line[: MAX_REPLY_CHARS - 1] + "…"
