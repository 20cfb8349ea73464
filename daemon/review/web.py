"""``musc-online review --web``: the review queue as a local page, with keyboard shortcuts for the operator.

A small standard-library HTTP server, bound to loopback by default. It serves only the page, the queue, the
pictures under the line's artifact folder, and mark/undo; writes take JSON only, so another site's page cannot
post to it from the operator's browser.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from daemon.review.queue import QueueLoader, describe, mark, threshold_moves, undo
from daemon.store import ConflictError, NotFoundError, Store, StoreError
from musc_online.transport import TransportSettings

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "review.html"
MAX_BODY_BYTES = 64 * 1024


class ReviewServer(ThreadingHTTPServer):
    """The HTTP server of one line's review page; handlers reach the store and the daemon through it."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        settings: TransportSettings,
        line: int,
        operator: str,
        load: QueueLoader,
        artifacts_dir: Path,
    ) -> None:
        super().__init__(address, ReviewHandler)
        self.store = store
        self.settings = settings
        self.line = line
        self.operator = operator
        self.load = load
        self.artifacts_dir = artifacts_dir.resolve()
        self.page = PAGE.read_bytes()

    def picture(self, frame_id: str) -> Path | None:
        """The frame's PNG when it lies inside the line's artifact folder; never any other file."""
        decision = self.store.decision_for(self.line, frame_id)
        if decision is None or not decision.artifact_path:
            return None
        path = Path(decision.artifact_path).resolve()
        inside = path.is_relative_to(self.artifacts_dir) and path.suffix == ".png"
        return path if inside and path.is_file() else None


def make_server(
    store: Store,
    settings: TransportSettings,
    line: int,
    operator: str,
    load: QueueLoader,
    artifacts_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
) -> ReviewServer:
    """A review server bound to ``host:port`` (port 0: a free one), ready for ``serve_forever``."""
    return ReviewServer((host, port), store, settings, line, operator, load, artifacts_dir)


class ReviewHandler(BaseHTTPRequestHandler):
    """GET /, /api/queue, /api/image?frame=ID; POST /api/mark, /api/undo (JSON)."""

    server: ReviewServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif url.path == "/api/queue":
            review = self.server
            items = [item.as_dict() for item in review.load()]
            moves = threshold_moves(review.settings)
            self._json(
                HTTPStatus.OK, {"line": review.line, "operator": review.operator, "items": items, "moves": moves}
            )
        elif url.path == "/api/image":
            path = self.server.picture(parse_qs(url.query).get("frame", [""])[0])
            if path is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "no picture kept for that frame"})
            else:
                self._send(HTTPStatus.OK, path.read_bytes(), "image/png")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {url.path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/api/mark", "/api/undo"):
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such action {path}"})
            return
        body = self._body()
        if body is None:
            return
        review = self.server
        try:
            if path == "/api/mark":
                result = mark(
                    review.store,
                    review.settings,
                    review.line,
                    str(body["frame_id"]),
                    str(body["verdict"]),
                    review.operator,
                    label=body.get("label") or None,
                    note=body.get("note") or None,
                )
            else:
                result = undo(review.store, review.settings, review.line, int(body["correction"]), review.operator)
        except KeyError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"missing field {error}"})
        except NotFoundError as error:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(error)})
        except ConflictError as error:
            self._json(HTTPStatus.CONFLICT, {"error": str(error)})
        except (StoreError, ValueError, TypeError) as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        else:
            self._json(HTTPStatus.OK, {**result, "text": describe(result)})

    def _body(self) -> dict[str, Any] | None:
        """The request's JSON object; None (with the error answered) for anything else or a cross-site post."""
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            self._json(HTTPStatus.FORBIDDEN, {"error": "cross-site requests are refused"})
            return None
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"at most {MAX_BODY_BYTES} bytes"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "send a JSON object"})
            return None
        return body

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: HTTPStatus, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("review page: " + format, *args)
