"""``musc-online review --web``: the plant's review station, one page for every line that reports into the store.

A small standard-library HTTP server (no web framework: the station serves one page and a handful of JSON
calls). The store is shared by the lines, so the station needs nothing else to reach them: it reads each
line's reports, decisions and pictures, and writes corrections that the line's daemon picks up within a
second (its control socket is tried first as a fast path). Each line's artifact folder and control endpoint
come from that line's config (``load_config(line)``).

Protections: accounts and sessions (``accounts.Gate``; viewers read, operators also correct, every write
carries the session's CSRF token), JSON-only writes with an Origin check and a size cap, a Host check on
loopback (against DNS rebinding), pictures only from inside the line's artifact folder, no caching, no
framing, and a content security policy that allows only the page's own script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from daemon.config import ConfigError, DaemonConfig
from daemon.review.accounts import LOGIN_DELAY_S, Gate, Session, Sessions, cookie_token, is_loopback, session_cookie
from daemon.review.queue import ReviewItem, describe, mark, review_queue, undo
from daemon.store import ConflictError, NotFoundError, Store, StoreError

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "review.html"
MAX_BODY_BYTES = 64 * 1024
STALE_AFTER_S = 30.0  # a line silent this long is shown as not reporting
SCORER_KEYS = ("band", "window", "window_capacity", "judges", "known_defects", "corrections_moving_band")

ConfigLoader = Callable[[int], DaemonConfig]  # a line's settings, e.g. ``partial(load_config, config_file=...)``
LineQueue = Callable[[int], list[ReviewItem]]  # a line's review queue with the station's filters
Headers = dict[str, str] | None
ALWAYS = {  # on every answer: never cached, never sniffed, never framed, no referrer
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Station:
    """What the station shows and does, apart from HTTP: the lines of the store, their queues, pictures, corrections."""

    def __init__(self, store: Store, configs: ConfigLoader, home_line: int, queue: LineQueue) -> None:
        self.store = store
        self.home_line = home_line
        self.queue_of = queue
        self._load = configs
        self._configs: dict[int, DaemonConfig] = {}
        self._lock = threading.Lock()

    def config(self, line: int) -> DaemonConfig:
        """The line's settings, read once."""
        with self._lock:
            if line not in self._configs:
                self._configs[line] = self._load(line)
            return self._configs[line]

    def line_numbers(self) -> list[int]:
        """Every line that reported into the store, and the station's own ``--line``."""
        return sorted({report.line for report in self.store.lines()} | {self.home_line})

    def require_line(self, line: int) -> int:
        """The line number when the station knows the line; NotFoundError naming the known ones otherwise."""
        known = self.line_numbers()
        if line not in known:
            raise NotFoundError(f"no line {line} in this store (lines: {', '.join(map(str, known))})")
        return line

    def lines(self) -> list[dict[str, Any]]:
        """Each line's latest report (host, age, band, scorer, pause) with its counts from the store."""
        reports = {report.line: report for report in self.store.lines()}
        now = time.time()
        shown = []
        for line in sorted(set(reports) | {self.home_line}):
            report = reports.get(line)
            status = (report.status if report else None) or {}
            age = None if report is None else max(0.0, now - report.reported_at)
            seen = {"line": line, "host": report and report.host, "reported_s_ago": age}
            health = {"stale": age is None or age > STALE_AFTER_S, **{k: status.get(k) for k in ("paused", "uptime_s")}}
            scorer = {key: (status.get("scorer") or {}).get(key) for key in SCORER_KEYS}
            shown.append(seen | health | scorer | {"counts": dict(self.store.counts(line))})
        return shown

    def queue(self, line: int | None) -> list[dict[str, Any]]:
        """The review queue of one line or of all, merged: nearest the band first, then newest."""
        lines = self.line_numbers() if line is None else [self.require_line(line)]
        items = [(n, item) for n in lines for item in self.queue_of(n)]
        items.sort(key=lambda pair: (pair[1].distance, -pair[1].decided_at))
        return [self._shown(n, item) for n, item in items]

    @staticmethod
    def _shown(line: int, item: ReviewItem) -> dict[str, Any]:
        shown = {**item.as_dict(), "line": line}
        del shown["artifact_path"]  # the station's file system is none of the browser's business
        url = f"/api/image?line={line}&frame={quote(item.frame_id, safe='')}"
        shown["picture"] = url if item.artifact_path else None
        return shown

    def picture(self, line: int, frame_id: str) -> Path | None:
        """The frame's PNG when it lies inside that line's artifact folder; never any other file."""
        decision = self.store.decision_for(self.require_line(line), frame_id)
        if decision is None or not decision.artifact_path:
            return None
        folder = self.config(line).artifacts_dir.resolve()
        path = Path(decision.artifact_path).resolve()
        inside = path.is_relative_to(folder) and path.suffix == ".png"
        return path if inside and path.is_file() else None

    def mark(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        """Record the session's verdict on a frame; the line applies it (control socket, else from the store)."""
        line = self.require_line(int(body["line"]))
        frame_id, verdict = body["frame_id"], body["verdict"]
        if not isinstance(frame_id, str) or not isinstance(verdict, str):
            raise ValueError("frame_id and verdict are strings")
        label, note = _text(body.get("label")), _text(body.get("note"))
        settings = self.config(line).transport_settings()
        result = mark(self.store, settings, line, frame_id, verdict, session.name, label=label, note=note)
        return {**result, "line": line, "text": describe(result)}

    def undo(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        """Undo a correction of a line in the session's name."""
        line = self.require_line(int(body["line"]))
        correction = body["correction"]
        if not isinstance(correction, int) or isinstance(correction, bool):
            raise ValueError("correction is a correction's number")
        result = undo(self.store, self.config(line).transport_settings(), line, correction, session.name)
        return {**result, "line": line, "text": describe(result)}

    def correction(self, line: int, correction_id: int) -> dict[str, Any]:
        """Whether the line has applied a correction yet, and what it did (its audit)."""
        found = next((c for c in self.store.corrections(self.require_line(line)) if c.id == correction_id), None)
        if found is None:
            raise NotFoundError(f"no correction {correction_id} on line {line}")
        return {**asdict(found), "applied": found.applied_at is not None, "undone": found.undone_at is not None}


def _text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("label and note are text")
    return value or None


def _csp(page: bytes) -> str:
    """A content security policy allowing the page's one inline script (by its hash) and nothing from elsewhere."""
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


class ReviewServer(ThreadingHTTPServer):
    """The station's HTTP server; handlers reach the lines through ``station`` and sessions through ``gate``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], station: Station, gate: Gate) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, ReviewHandler)
        self.station = station
        self.gate = gate
        self.page = PAGE.read_bytes()
        self.csp = _csp(self.page)


def make_server(
    store: Store,
    configs: ConfigLoader,
    line: int,
    operator: str,
    host: str = "127.0.0.1",
    port: int = 0,
    queue: LineQueue | None = None,
    login_delay_s: float = LOGIN_DELAY_S,
    sessions: Sessions | None = None,
) -> ReviewServer:
    """The station bound to ``host:port`` (0: a free port), ready for ``serve_forever``.

    ``line`` is the station's own line (shown even before it reports); ``operator`` is who marks on an open
    station (loopback, no accounts). StationRefused, before anything is bound, off loopback without accounts.
    """
    gate = Gate(store, host, operator, sessions=sessions, login_delay_s=login_delay_s)
    station = Station(store, configs, line, queue or partial(review_queue, store))
    return ReviewServer((host, port), station, gate)


class ReviewHandler(BaseHTTPRequestHandler):
    """GET /, /api/{me,lines,queue,image,correction}; POST /api/{login,logout,mark,undo} (JSON)."""

    server: ReviewServer
    _GETS = ("/api/lines", "/api/queue", "/api/image", "/api/correction")
    _POSTS = ("/api/login", "/api/logout", "/api/mark", "/api/undo")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._host_allowed():
            return
        if url.path == "/":
            csp = {"Content-Security-Policy": self.server.csp}
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8", csp)
        elif url.path == "/api/me":
            self._me()
        elif url.path in self._GETS:
            if self._session() is None and self.server.gate.login_required():
                self._refuse_login()
                return
            self._answer(lambda: self._read(url.path, parse_qs(url.query)))
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {url.path}"})

    def _read(self, path: str, query: dict[str, list[str]]) -> Any:
        station = self.server.station
        if path == "/api/lines":
            return {"lines": station.lines(), "stale_after_s": STALE_AFTER_S}
        if path == "/api/queue":
            chosen = _param(query, "line", "all")
            items = station.queue(None if chosen == "all" else int(chosen))
            return {"line": chosen, "lines": station.line_numbers(), "items": items}
        if path == "/api/image":
            picture = station.picture(int(_param(query, "line")), _param(query, "frame"))
            if picture is None:
                raise NotFoundError("no picture kept for that frame")
            return picture
        return station.correction(int(_param(query, "line")), int(_param(query, "id")))

    def _me(self) -> None:
        gate = self.server.gate
        required = gate.login_required()
        session, cookie = self._session(), None
        if session is None and not required:  # the open station: the local operator, no password
            session = gate.open_session()
            cookie = session_cookie(session.token)
        if session is None:
            self._refuse_login()
            return
        me = {"name": session.name, "role": session.role, "csrf": session.csrf, "login_required": required}
        self._json(HTTPStatus.OK, me, {"Set-Cookie": cookie} if cookie else None)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not self._host_allowed():
            return
        if path not in self._POSTS:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such action {path}"})
            return
        body = self._body()
        if body is None:
            return
        if path == "/api/login":
            self._login(body)
            return
        session = self._session()
        if session is None:
            if path == "/api/logout":
                self._json(HTTPStatus.OK, {"logged_out": True}, {"Set-Cookie": session_cookie("", expire=True)})
            else:
                self._refuse_login()
            return
        if not session.csrf_matches(self.headers.get("X-CSRF-Token")):
            self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong X-CSRF-Token: reload the page"})
        elif path == "/api/logout":
            self.server.gate.sessions.end(session.token)
            self._json(HTTPStatus.OK, {"logged_out": True}, {"Set-Cookie": session_cookie("", expire=True)})
        elif not session.may_correct:
            self._json(HTTPStatus.FORBIDDEN, {"error": f"{session.name} is a viewer: only operators mark and undo"})
        else:
            station = self.server.station
            action = station.mark if path == "/api/mark" else station.undo
            self._answer(lambda: action(session, body))

    def _login(self, body: dict[str, Any]) -> None:
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "send name and password as text"})
            return
        session = self.server.gate.login(name, password)
        if session is None:
            log.warning("review station: failed login as %r from %s", name[:64], self.client_address[0])
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "wrong name or password", "login_required": True})
            return
        self.server.gate.sessions.end(cookie_token(self.headers.get("Cookie")))  # this browser's previous one
        log.info("review station: %s (%s) logged in from %s", session.name, session.role, self.client_address[0])
        me = {"name": session.name, "role": session.role, "csrf": session.csrf}
        self._json(HTTPStatus.OK, me, {"Set-Cookie": session_cookie(session.token)})

    def _session(self) -> Session | None:
        return self.server.gate.session(cookie_token(self.headers.get("Cookie")))

    def _refuse_login(self) -> None:
        required = self.server.gate.login_required()
        why = "log in first" if required else "no session: GET /api/me first"
        self._json(HTTPStatus.UNAUTHORIZED, {"error": why, "login_required": required})

    def _answer(self, work: Callable[[], Any]) -> None:
        """Run a read or an action; its JSON (or a picture), or the error as the status it means."""
        try:
            result = work()
        except KeyError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"missing field {error}"})
        except NotFoundError as error:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(error)})
        except ConflictError as error:
            self._json(HTTPStatus.CONFLICT, {"error": str(error)})
        except ConfigError as error:
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"the line's config: {error}"})
        except (StoreError, ValueError, TypeError) as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        else:
            if isinstance(result, Path):
                self._send(HTTPStatus.OK, result.read_bytes(), "image/png")
            else:
                self._json(HTTPStatus.OK, result)

    def _host_allowed(self) -> bool:
        """On loopback only loopback Host names: a rebinding site's page must not reach the open station."""
        if not self.server.gate.loopback:
            return True
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if is_loopback(host):
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": "the station on loopback answers loopback names only"})
        return False

    def _body(self) -> dict[str, Any] | None:
        """The request's JSON object; None (with the error answered) for anything else or a cross-site post."""
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            self._json(HTTPStatus.FORBIDDEN, {"error": "cross-site requests are refused"})
            return None
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"send at most {MAX_BODY_BYTES} bytes"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "send a JSON object"})
            return None
        return body

    def _json(self, status: HTTPStatus, value: Any, headers: Headers = None) -> None:
        self._send(status, json.dumps(_finite(value)).encode(), "application/json", headers)

    def _send(self, status: HTTPStatus, payload: bytes, content_type: str, headers: Headers = None) -> None:
        self.send_response(status)
        extra = {"Content-Type": content_type, "Content-Length": str(len(payload)), **ALWAYS, **(headers or {})}
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("review station: " + format, *args)


def _finite(value: Any) -> Any:
    """The value with infinite and NaN numbers (an unset band's edges) as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _param(query: dict[str, list[str]], name: str, default: str | None = None) -> str:
    """A query parameter's value; KeyError (answered 400) when it is missing and has no default."""
    values = query.get(name)
    if not values and default is None:
        raise KeyError(name)
    return values[0] if values else str(default)
