"""Optional tokens in front of the operator endpoints: /metrics, and the API's docs and schema.

A token is sent as `Authorization: Bearer <token>` (Prometheus' `authorization` setting, curl) or
as the password of HTTP Basic (any user name), which a browser asks for on the docs page and
then sends with the schema request too. Without a configured token, the paths are open."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from api.asgi import route_path
from api.errors import error_response


@dataclass(frozen=True)
class Guarded:
    """Paths (each with what lies below it) that need `token`; `setting` names its variable."""

    paths: tuple[str, ...]
    token: str
    setting: str
    challenge: str

    def covers(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)


def presented_token(authorization: str) -> str | None:
    """The token in a Bearer header, or the password of a Basic one."""
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class OperatorAccess:
    """Answers 401 on a guarded path unless the request presents that path's token."""

    def __init__(self, app: ASGIApp, guarded: list[Guarded]) -> None:
        self.app, self.guarded = app, [g for g in guarded if g.token]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rule = None
        if scope["type"] == "http":
            path = route_path(scope)
            rule = next((g for g in self.guarded if g.covers(path)), None)
        if rule is None:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        presented = presented_token(header)
        if presented is not None and hmac.compare_digest(presented.encode(), rule.token.encode()):
            await self.app(scope, receive, send)
            return
        name = "missing_api_key" if presented is None else "invalid_api_key"
        message = f"This path needs the token set in {rule.setting}"
        challenge = {"www-authenticate": rule.challenge}
        await error_response(401, name, message, challenge)(scope, receive, send)
