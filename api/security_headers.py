"""Security headers: `nosniff` on every answer, and on every HTML page a CSP, no framing and
no referrer, unless the page set its own (the dashboard does, in web/render.py)."""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from api.asgi import HttpMiddleware

# Own files only: no CDN, no framing, no plugin, no <base>. Inline <script> and <style> blocks
# (the unsubscribe page's style, Swagger UI's start-up script) are allowed by their hash alone.
POLICY = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{styles}; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "x-frame-options": "DENY",
    # Unsubscribe links carry their token in the path: it must not leak to another site.
    "referrer-policy": "no-referrer",
}
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.I | re.S)
_INLINE_STYLE = re.compile(rb"<style[^>]*>(.*?)</style>", re.I | re.S)


def content_security_policy(html: bytes) -> str:
    """POLICY for this page, with the hashes of its inline scripts and styles."""

    def hashes(pattern: re.Pattern[bytes]) -> str:
        found = {
            "'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode() + "'"
            for block in pattern.findall(html)
            if block.strip()
        }
        return "".join(" " + source for source in sorted(found))

    return POLICY.format(scripts=hashes(_INLINE_SCRIPT), styles=hashes(_INLINE_STYLE))


class SecurityHeaders(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: Message | None = None
        body: list[bytes] = []

        async def secured(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-content-type-options", "nosniff")
                html = headers.get("content-type", "").startswith("text/html")
                if html and "content-security-policy" not in headers:
                    held = message  # the policy needs the page's inline blocks: wait for it
                    return
                await send(message)
            elif held is not None and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = b"".join(body)
                headers = MutableHeaders(scope=held)
                headers["content-security-policy"] = content_security_policy(page)
                for name, value in PAGE_HEADERS.items():
                    headers.setdefault(name, value)
                await send(held)
                await send({"type": "http.response.body", "body": page, "more_body": False})
            else:
                await send(message)

        await self.app(scope, receive, secured)
