"""Security headers on every response of the plugin, whatever answered it (a route, a refusal, routing's 404).

``nosniff`` so a report or an error is never read as another type; ``Referrer-Policy: same-origin`` so request ids
in URLs do not leak to other sites; ``X-Frame-Options: SAMEORIGIN`` (with the pages' and reports' CSP
``frame-ancestors 'self'``) because the Airflow UI, same origin, frames the pages and no other site may. A response
that sets no CSP of its own (JSON, files) gets one that lets it run nothing: a JSON body opened as a document is
inert. Only ``/docs`` (FastAPI's Swagger page, which loads its own scripts) keeps no CSP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}
INERT_CSP = "default-src 'none'; frame-ancestors 'self'; sandbox"
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")


class SecurityHeaders:
    """Pure ASGI (a ``BaseHTTPMiddleware`` would buffer the streamed audit export); adds, never overrides."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        docs = any(path.endswith(p) for p in DOCS_PATHS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    if name not in headers:
                        headers[name] = value
                if not docs and "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = INERT_CSP
            await send(message)

        await self.app(scope, receive, with_headers)
