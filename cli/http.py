"""The one way the client commands talk to the API, and the exit codes its failures become."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cli.failures import EXIT_CODES_HELP, ExitCode, fail

if TYPE_CHECKING:
    import httpx

# The client commands' names for these have always come from here.
__all__ = ["DEFAULT_API_URL", "EXIT_CODES_HELP", "Api", "ExitCode", "fail", "path"]

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 30.0


def path(*segments: str) -> str:
    """An URL path from segments, each quoted so that an id cannot walk to another route."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def _reason(exc: httpx.HTTPError) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {TIMEOUT_SECONDS:g} s"
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip()) or type(exc).__name__
    return text[0].lower() + text[1:]


# `scheme://user:password@`: the password up to the first `@`, whatever it holds (a `/` too).
_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@]*@", re.IGNORECASE)


def shown_url(url: str) -> str:
    """The URL as it may be printed: a password in it (a proxy's) as `***`."""
    return _PASSWORD.sub(r"\1:***@", url)


def _error_parts(response: httpx.Response) -> tuple[str, str] | None:
    """The API's (name, message); None when the body is not the API's error JSON."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body.get("name", "error")), body["message"]
    return None


@dataclass(frozen=True)
class Api:
    """Where the API is and how to authenticate."""

    url: str
    key: str | None
    # (file, key) that `dev` and `demo` wrote, tried in turn when no key was given.
    local_keys: tuple[tuple[str, str], ...] = ()

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
        query = {k: v for k, v in (params or {}).items() if v is not None}
        keys: list[str | None] = [self.key] if self.key else [k for _, k in self.local_keys]
        for key in keys or [None]:
            response = self._send(method, where, key, params=query, body=body)
            # A refused local key is the other embedded server's: nothing was done, try the next.
            if response.status_code != 401:
                break
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                fail(
                    f"the server at {shown_url(self.url)} answered HTTP "
                    f"{response.status_code} without JSON; is --api-url the automations API?",
                    ExitCode.UNREACHABLE,
                )
        parts = _error_parts(response)
        status = response.status_code
        if status >= 500:
            name, message = parts or ("http_error", response.reason_phrase or "no message")
            failure = f"the API at {shown_url(self.url)} failed: {message} ({name}, HTTP {status})"
            fail(failure, ExitCode.UNREACHABLE)
        if parts is None:  # every refusal of the API is its JSON: another server answered
            fail(
                f"the server at {shown_url(self.url)} answered HTTP {status} without the API's "
                "JSON; is "
                "--api-url the automations API?",
                ExitCode.UNREACHABLE,
            )
        name, message = parts
        if status == 401 and not self.key:
            message += "; " + self._key_hint()
        prefix = f"{subject}: " if subject else ""
        fail(f"{prefix}{message} ({name}, HTTP {status})", ExitCode.REFUSED)

    def _send(
        self, method: str, where: str, key: str | None, *, params: dict[str, Any], body: Any
    ) -> httpx.Response:
        import httpx  # here, not at the top: the commands that make no request start faster

        headers = {"User-Agent": "automations-cli"}
        if key:
            if not (key.isascii() and key.isprintable()):
                # Never repeated: it may be a real key with a stray character pasted in.
                fail(
                    "the API key (--api-key or AUTOMATIONS_API_KEY) holds a character that "
                    "is not printable ASCII; keys look like re_...",
                    ExitCode.BAD_INPUT,
                )
            headers["Authorization"] = f"Bearer {key}"
        try:
            with httpx.Client(
                base_url=self.url, headers=headers, timeout=TIMEOUT_SECONDS
            ) as client:
                return client.request(method, where, params=params, json=body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            shown = shown_url(self.url)
            # httpx quotes what it misread, which may be part of the password.
            reason = str(exc) if shown == self.url else "its password cannot be read"
            fail(f"--api-url {shown!r} is not a usable URL: {reason}", ExitCode.BAD_INPUT)
        except httpx.HTTPError as exc:
            shown = shown_url(self.url)
            fail(f"cannot reach the API at {shown}: {_reason(exc)}", ExitCode.UNREACHABLE)

    def _key_hint(self) -> str:
        if self.local_keys:
            files = " and ".join(path for path, _ in self.local_keys)
            keys = "keys" if len(self.local_keys) > 1 else "key"
            return f"tried the {keys} in {files}: pass --api-key or set AUTOMATIONS_API_KEY"
        return "pass --api-key or set AUTOMATIONS_API_KEY"
