"""Email transports: SMTP, Resend's HTTP API, `.eml` files and the console."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from engine.mail.base import Transport
from engine.mail.files import ConsoleTransport, FileTransport
from engine.mail.message import OutgoingEmail
from engine.mail.smtp import DEFAULT_PORTS as SMTP_SCHEMES
from engine.mail.smtp import SmtpTransport

__all__ = ["OutgoingEmail", "Transport", "transport_from_url"]

ACCEPTED_SCHEMES = (*SMTP_SCHEMES, "resend+https", "resend+http", "file", "console")
API_KEY_SETTING = "AUTOMATIONS_EMAIL_API_KEY"


def transport_from_url(url: str, *, api_key: str | None = None) -> Transport:
    """The transport a URL names: smtp[s|+starttls]://, resend+http[s]://, file:///, console://."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in SMTP_SCHEMES:
        return SmtpTransport(url)
    if scheme in {"resend+https", "resend+http"}:
        return _resend_transport(scheme, url, api_key)
    if scheme == "file":
        if parts.netloc not in {"", "localhost"} or not parts.path:
            raise ValueError("email transport URL file:// must name an absolute directory")
        return FileTransport(unquote(parts.path))
    if scheme == "console":
        return ConsoleTransport()
    # Only the scheme is repeated: the rest of the URL may hold a password.
    raise ValueError(
        f"unknown email transport scheme {scheme or '(none)'!r}; "
        f"expected one of {', '.join(s + '://' for s in ACCEPTED_SCHEMES)}"
    )


def _resend_transport(scheme: str, url: str, api_key: str | None) -> Transport:
    """Resend's HTTP API at the URL's host; its messages never repeat the URL."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # httpx would send it as Basic auth instead of the key, and print it in its errors.
        raise ValueError(
            f"email transport URL {scheme}:// takes no user or password: the API key goes in "
            f"{API_KEY_SETTING}"
        )
    try:
        parts.port  # noqa: B018 - read for the ValueError of a port that is not one
    except ValueError:
        raise ValueError(f"email transport URL {scheme}:// has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"email transport URL {scheme}:// needs a host")
    if not api_key:
        raise ValueError(f"email transport {scheme}:// needs an API key: set {API_KEY_SETTING}")
    base_url = f"{scheme.removeprefix('resend+')}://{parts.netloc}{parts.path}"
    # httpx only for this transport: every worker, API server and operator command builds
    # a transport, most of them SMTP, and importing httpx took 50 to 70 ms of their start.
    import httpx

    from engine.mail.resend_http import ResendHttpTransport

    try:
        return ResendHttpTransport(api_key, base_url=base_url)
    except httpx.InvalidURL:
        raise ValueError(f"email transport URL {scheme}:// is not a valid URL") from None
