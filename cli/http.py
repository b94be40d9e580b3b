"""The one way the client commands talk to the API, and the exit codes its failures become."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
import typer

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 30.0


class ExitCode(IntEnum):
    """What a script may rely on; documented in cli/README.md and in every command's help."""

    OK = 0
    REFUSED = 1  # the API answered 4xx
    BAD_INPUT = 2  # found locally before any request (and typer's own usage errors)
    UNREACHABLE = 3  # no answer, a 5xx, or an answer that is not the API's JSON
    FAILED = 4  # simulate: the simulated run would fail, or an expectation is not met


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 the API refused the request (4xx); "
    "2 bad input found locally; 3 API unreachable or failing (5xx)."
)


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print one `error:` line on stderr and leave with `code`."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(int(code))


def path(*segments: str) -> str:
    """An URL path from segments, each quoted so that an id cannot walk to another route."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {TIMEOUT_SECONDS:g} s"
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip()) or type(exc).__name__
    return text[0].lower() + text[1:]


def _error_parts(response: httpx.Response) -> tuple[str, str]:
    """The API's (name, message), or a stand-in when the body is not the API's error JSON."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body.get("name", "error")), body["message"]
    return "http_error", response.reason_phrase or "no message"


@dataclass(frozen=True)
class Api:
    """Where the API is and how to authenticate."""

    url: str
    key: str | None

    def call(
        self,
        method: str,
        where: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        subject: str | None = None,
    ) -> Any:
        """The decoded JSON answer; on any failure, an `error:` line and the matching exit code.

        `subject` (e.g. "automation <id>") prefixes a refusal, so the message names what was asked.
        """
        headers = {"User-Agent": "automations-cli"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with httpx.Client(
                base_url=self.url, headers=headers, timeout=TIMEOUT_SECONDS
            ) as client:
                response = client.request(method, where, params=query, json=body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            fail(f"--api-url {self.url!r} is not a usable URL: {exc}", ExitCode.BAD_INPUT)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the API at {self.url}: {_reason(exc)}", ExitCode.UNREACHABLE)
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                fail(
                    f"the server at {self.url} answered HTTP {response.status_code} without "
                    "JSON; is --api-url the automations API?",
                    ExitCode.UNREACHABLE,
                )
        name, message = _error_parts(response)
        status = response.status_code
        if status >= 500:
            failure = f"the API at {self.url} failed: {message} ({name}, HTTP {status})"
            fail(failure, ExitCode.UNREACHABLE)
        if status == 401 and not self.key:
            message += "; pass --api-key or set AUTOMATIONS_API_KEY"
        prefix = f"{subject}: " if subject else ""
        fail(f"{prefix}{message} ({name}, HTTP {status})", ExitCode.REFUSED)
