"""The shape the API's own ASGI middlewares share (plain ASGI: no BaseHTTPMiddleware task per
request)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware(ABC):
    """Sees each HTTP request in `http`; lifespan and any other scope go straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    @abstractmethod
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What the middleware does with one HTTP request."""


def route_path(scope: Scope) -> str:
    """The path the app routes on: below uvicorn's `--root-path`, which it includes in `path`
    (a check on `path` alone never matched `/metrics` behind a prefix, and let it through)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return path[len(root.rstrip("/")) :] or "/"
    return path
