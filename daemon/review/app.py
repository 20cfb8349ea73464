"""The review station's web application (Starlette): the page and its JSON calls, over ``Station`` and ``Gate``.

GET ``/``, ``/api/{me,lines,queue,image,correction,care-area.png}``; POST ``/api/{login,logout,mark,undo}`` (JSON,
with the session's CSRF token). Viewers read, operators also correct. Every answer other than the page and a picture is
JSON, errors included: a bad request, a missing picture, a store that fails (503), a bug (500), each with
``{"error": ...}`` and its status, never a dropped connection. The store's calls block, so they run in
Starlette's thread pool; logins take one of a few slots (Argon2 is costly on purpose) and every refused login
is answered after the same fixed delay, without holding a thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.config import ConfigError
from daemon.review.accounts import LOGIN_DELAY_S, Gate
from daemon.review.guards import ALWAYS, BODY_TIMEOUT_S, Guard, Refused, json_object
from daemon.review.queue import review_queue
from daemon.review.sessions import COOKIE, Session, session_cookie
from daemon.review.station import STALE_AFTER_S, ConfigLoader, LineQueue, Station
from daemon.review.throttle import UNLOCK_HINT, Throttle
from daemon.store import ConflictError, NotFoundError, Store, StoreError, StoreUnavailableError

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "review.html"
LOGIN_SLOTS = 4  # password checks at once: Argon2 takes memory and CPU on purpose
_MEANING: list[tuple[type[Exception], int]] = [  # a station error's status, the first that fits
    (KeyError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ConfigError, 500),
    (StoreError, 400),  # not StoreUnavailableError: that is the store's fault, answered by _failed
    (ValueError, 400),
    (TypeError, 400),
    (OSError, 404),  # a picture gone between the check and the read
]


def _finite(value: Any) -> Any:
    """The value with infinite and NaN numbers (an unset band's edges) as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_finite(value), status, headers)


def _csp(page: bytes) -> str:
    """A content security policy allowing the page's one inline script (by its hash) and nothing from elsewhere."""
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


def _param(request: Request, name: str, default: str | None = None) -> str:
    """A query parameter's value; KeyError (answered 400) when it is missing and has no default."""
    value = request.query_params.get(name, default)
    if value is None:
        raise KeyError(name)
    return value


async def _work(call: Callable[[], Any]) -> Any:
    """Run a station call in the thread pool; its errors as the refusal they mean."""
    try:
        return await run_in_threadpool(call)
    except Exception as error:
        status = next((code for kind, code in _MEANING if isinstance(error, kind)), None)
        if status is None or isinstance(error, StoreUnavailableError):
            raise
        text = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        if isinstance(error, ConfigError):
            text = f"the line's config: {error}"
        elif isinstance(error, OSError):
            text = "no picture kept for that frame"
        raise Refused(status, text) from error


class Handlers:
    """The station's routes, bound to its ``Station`` and ``Gate``."""

    def __init__(self, station: Station, gate: Gate, login_delay_s: float, body_timeout_s: float) -> None:
        self.station = station
        self.gate = gate
        self.login_delay_s = login_delay_s
        self.body_timeout_s = body_timeout_s
        self.login_slots = asyncio.Semaphore(LOGIN_SLOTS)
        self.page = PAGE.read_bytes()
        self.csp = _csp(self.page)

    async def session(self, request: Request) -> Session | None:
        return await _work(partial(self.gate.session, request.cookies.get(COOKIE)))

    async def refuse_login(self) -> Refused:
        required = await _work(self.gate.login_required)
        why = "log in first" if required else "no session: GET /api/me first"
        return Refused(401, why, {"login_required": required})

    async def reader(self, request: Request) -> None:
        """Refused unless the request may read: a session, or the open station."""
        if await self.session(request) is None and await _work(self.gate.login_required):
            raise await self.refuse_login()

    async def index(self, request: Request) -> Response:
        return Response(self.page, 200, {"Content-Security-Policy": self.csp}, "text/html; charset=utf-8")

    async def me(self, request: Request) -> Response:
        session = await self.session(request)
        cookie = None
        if session is None:  # the open station: its one local session, never a new one per request
            session = await _work(self.gate.open_session)
            cookie = session and session_cookie(session.token, secure=request.url.scheme == "https")
        if session is None:
            raise await self.refuse_login()
        required = await _work(self.gate.login_required)
        me = {"name": session.name, "role": session.role, "csrf": session.csrf, "login_required": required}
        return _json(200, me, {"Set-Cookie": cookie} if cookie else None)

    async def lines(self, request: Request) -> Response:
        await self.reader(request)
        return _json(200, {"lines": await _work(self.station.lines), "stale_after_s": STALE_AFTER_S})

    async def queue(self, request: Request) -> Response:
        await self.reader(request)
        chosen = _param(request, "line", "all")
        items = await _work(lambda: self.station.queue(None if chosen == "all" else int(chosen)))
        return _json(200, {"line": chosen, "lines": await _work(self.station.line_numbers), "items": items})

    async def image(self, request: Request) -> Response:
        await self.reader(request)

        def read() -> bytes:
            picture = self.station.picture(int(_param(request, "line")), _param(request, "frame"))
            if picture is None:
                raise NotFoundError("no picture kept for that frame")
            return picture.read_bytes()

        return Response(await _work(read), 200, media_type="image/png")

    async def care_area(self, request: Request) -> Response:
        """The line's care area as a PNG to lay over heatmaps (``Station.care_veil``); 404: the whole frame counts."""
        await self.reader(request)

        def read() -> bytes:
            veil = self.station.care_veil(int(_param(request, "line")))
            if veil is None:
                raise NotFoundError("no care area on that line: the whole frame counts")
            return veil

        return Response(await _work(read), 200, media_type="image/png")

    async def correction(self, request: Request) -> Response:
        await self.reader(request)
        found = await _work(lambda: self.station.correction(int(_param(request, "line")), int(_param(request, "id"))))
        return _json(200, found)

    async def login(self, request: Request) -> Response:
        body = await json_object(request, self.body_timeout_s)
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise Refused(400, "send name and password as text")
        address = request.client.host if request.client else "unknown"
        started = time.monotonic()
        async with self.login_slots:
            outcome = await _work(partial(self.gate.login, name, password, address))
        if outcome.session is None:
            await asyncio.sleep(max(0.0, self.login_delay_s - (time.monotonic() - started)))
            log.warning("review station: failed login as %r from %s", name[:64], address)
            if outcome.locked is not None:
                what, seconds = outcome.locked
                text = f"too many failed logins: {what} is locked for {seconds} s (or until `{UNLOCK_HINT}`)"
                raise Refused(429, text, {"login_required": True}, {"Retry-After": str(seconds)})
            raise Refused(401, "wrong name or password", {"login_required": True})
        await _work(partial(self.gate.sessions.end, request.cookies.get(COOKIE)))  # this browser's previous one
        session = outcome.session
        log.info("review station: %s (%s) logged in from %s", session.name, session.role, address)
        cookie = session_cookie(session.token, secure=request.url.scheme == "https")
        return _json(200, {"name": session.name, "role": session.role, "csrf": session.csrf}, {"Set-Cookie": cookie})

    async def writer(self, request: Request) -> tuple[Session | None, dict[str, Any]]:
        """The request's body and its session when its CSRF token matches; refused otherwise (None: no session)."""
        body = await json_object(request, self.body_timeout_s)
        session = await self.session(request)
        if session is not None and not session.csrf_matches(request.headers.get("x-csrf-token")):
            raise Refused(403, "missing or wrong X-CSRF-Token: reload the page")
        return session, body

    async def logout(self, request: Request) -> Response:
        session, _ = await self.writer(request)
        if session is not None:
            await _work(partial(self.gate.sessions.end, session.token))
        expired = session_cookie("", secure=request.url.scheme == "https", expire=True)
        return _json(200, {"logged_out": True}, {"Set-Cookie": expired})

    async def correct(self, request: Request) -> Response:
        session, body = await self.writer(request)
        if session is None:
            raise await self.refuse_login()
        if not session.may_correct:
            raise Refused(403, f"{session.name} is a viewer: only operators mark and undo")
        action = self.station.mark if request.url.path == "/api/mark" else self.station.undo
        return _json(200, await _work(partial(action, session.name, body)))


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refused)
    return _json(error.status, {"error": str(error), **error.extra}, error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    what = f"no such page {request.url.path}" if error.status_code == 404 else error.detail
    return _json(error.status_code, {"error": what}, error.headers)


async def _gone(request: Request, error: Exception) -> Response:
    return _json(400, {"error": "the request ended before its body arrived"}, {"Connection": "close"})


async def _store_down(request: Request, error: Exception) -> Response:
    """The store did not answer: a 503 saying so (where it is, only in the log)."""
    log.warning("review station: %s %s: %s", request.method, request.url.path, error)
    return _json(503, {"error": "the store did not answer: try again shortly"}, {"Retry-After": "5"})


async def _failed(request: Request, error: Exception) -> Response:
    """Anything unforeseen: logged with its trace (by uvicorn); a database error is a 503, the rest a 500. This
    answer is made outside ``Guard``, so it adds the ``ALWAYS`` headers itself."""
    log.error("review station: %s %s failed: %s", request.method, request.url.path, error)
    if type(error).__module__.split(".")[0] == "sqlalchemy":  # a database error the store did not translate
        answer = await _store_down(request, error)
    else:
        answer = _json(500, {"error": f"the station failed ({type(error).__name__}); its log says more"})
    answer.headers.update({name.decode(): value.decode() for name, value in ALWAYS})
    return answer


def make_app(
    station: Station, gate: Gate, login_delay_s: float = LOGIN_DELAY_S, body_timeout_s: float = BODY_TIMEOUT_S
) -> Starlette:
    """The station's ASGI application; its ``state`` holds the ``station`` and the ``gate``."""
    h = Handlers(station, gate, login_delay_s, body_timeout_s)
    routes = [
        Route("/", h.index),
        Route("/api/me", h.me),
        Route("/api/lines", h.lines),
        Route("/api/queue", h.queue),
        Route("/api/image", h.image),
        Route("/api/correction", h.correction),
        Route("/api/care-area.png", h.care_area),
        Route("/api/login", h.login, methods=["POST"]),
        Route("/api/logout", h.logout, methods=["POST"]),
        Route("/api/mark", h.correct, methods=["POST"]),
        Route("/api/undo", h.correct, methods=["POST"]),
    ]
    handlers = {
        Refused: _refused,
        HTTPException: _http_error,
        ClientDisconnect: _gone,
        StoreUnavailableError: _store_down,
        Exception: _failed,
    }
    app = Starlette(routes=routes, middleware=[Middleware(Guard, loopback=gate.loopback)], exception_handlers=handlers)
    app.state.station, app.state.gate = station, gate
    return app


def station_app(
    store: Store,
    configs: ConfigLoader,
    line: int,
    operator: str,
    host: str = "127.0.0.1",
    queue: LineQueue | None = None,
    login_delay_s: float = LOGIN_DELAY_S,
    throttle: Throttle | None = None,
    body_timeout_s: float = BODY_TIMEOUT_S,
    behind_proxy: bool = False,
) -> Starlette:
    """The station over ``store`` for an address ``host``; StationRefused without accounts off loopback or
    ``behind_proxy`` (a proxy serves it to others).

    ``line`` is the station's own line (shown even before it reports); ``operator`` is who marks on an open
    station (loopback, no proxy, no accounts).
    """
    gate = Gate(store, host, operator, throttle=throttle, behind_proxy=behind_proxy)
    station = Station(store, configs, line, queue or partial(review_queue, store))
    return make_app(station, gate, login_delay_s, body_timeout_s)
