"""The review station's request checks, before any work: the Host on loopback, the Origin of writes, JSON only,
a body cap and a body deadline; and the headers every answer carries.

Behind a TLS proxy the request's scheme and client address are the proxy's word (uvicorn's proxy headers,
trusted only from ``--forwarded-allow-ips``), so the Origin of a page served as ``https://station`` matches.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from musc_online.transport import is_loopback

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 10.0  # a request's body must have arrived this long after its headers
ALWAYS = [  # on every answer: never cached, never sniffed, never framed, no referrer
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Refused(Exception):
    """A request the station will not serve: the status, a message for the page, and any extra fields or headers."""

    def __init__(
        self, status: int, message: str, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra or {}
        self.headers = headers or {}


class Guard:
    """ASGI middleware: on a loopback station only loopback Host names (a DNS-rebinding site's page must not reach
    it), and the ``ALWAYS`` headers on every answer, errors included."""

    def __init__(self, app: ASGIApp, loopback: bool) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *ALWAYS]}
            await send(message)

        if self.loopback and not is_loopback(_host_name(Request(scope).headers.get("host", ""))):
            payload = json.dumps({"error": "the station on loopback answers loopback names only"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send_with_headers({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, receive, send_with_headers)


def _host_name(host: str) -> str:
    return urlsplit("//" + host).hostname or ""


def _origin(scheme: str, host: str) -> tuple[str, str, int | None]:
    """A scheme and host[:port] as (scheme, name, port), the default port made explicit."""
    try:
        parts = urlsplit(f"{scheme}://{host}")
        return parts.scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return scheme, "", None


def same_origin(request: Request) -> bool:
    """Whether a write comes from the station's own page: no Origin (not a browser's cross-site call) or the
    origin the request itself was made to (its scheme, behind a trusted proxy the proxy's, and its Host), and no
    ``Sec-Fetch-Site`` naming another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    scheme, _, rest = origin.partition("://")
    return _origin(scheme, rest) == _origin(request.url.scheme, request.headers.get("host", ""))


async def json_object(request: Request, deadline_s: float) -> dict[str, Any]:
    """The request's JSON object, from its own page only, at most ``MAX_BODY_BYTES``, arrived within the deadline.

    Refused otherwise; a body cut short (too large, too slow) is answered with ``Connection: close``.
    """
    if not same_origin(request):
        raise Refused(403, "cross-site requests are refused")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "send application/json")
    too_large = Refused(413, f"send at most {MAX_BODY_BYTES} bytes", headers={"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isdigit() and int(declared) <= MAX_BODY_BYTES):
        raise too_large
    chunks: list[bytes] = []

    async def read() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), deadline_s)
    except TimeoutError:
        late = f"the request's body did not arrive within {deadline_s:g} s"
        raise Refused(408, late, headers={"Connection": "close"}) from None
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(400, "send a JSON object")
    return body
