"""How the review station is served: uvicorn (h11) with limits that an anonymous client cannot exhaust, trusted
proxy headers, and TLS when given a certificate.

- ``MAX_CONNECTIONS``: connections at once (so requests at once); one more is answered 503 at once and closed.
- ``HEADER_TIMEOUT_S``: a connection must have sent a whole request head this long after it opened or after
  its previous answer, else it is closed (uvicorn alone waits for ever on a head that trickles in).
- ``KEEP_ALIVE_S``: an idle kept-alive connection is closed after this; heads are at most ``MAX_HEAD_BYTES``.
- The body cap and the body deadline are checked by the application (``guards``).
- ``forwarded_allow_ips``: the proxies whose ``X-Forwarded-Proto``/``-For`` are believed (none by default), so
  behind a TLS proxy the station knows the page is HTTPS (Origin check, Secure cookie) and who the client is
  (login throttling).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_CONNECTIONS = 64
HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024
BACKLOG = 128


def _raw_json(status: int, reason: str, error: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error that closes the connection (for answers below the application)."""
    body = json.dumps({"error": error}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "cache-control: no-store\r\nconnection: close\r\n\r\n").encode() + body


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit, a deadline on each request head (against slowloris-style
    clients) and JSON for the errors it answers itself."""

    def __init__(
        self,
        *args: Any,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.logger.warning("refused a connection: %d open already", self.max_connections)
            transport.write(_raw_json(503, "Service Unavailable", "the station is busy: try again shortly"))
            transport.close()
            return
        self._arm_head_deadline()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse: a JSON 400, and the connection closed."""
        self.transport.write(_raw_json(400, "Bad Request", f"not an HTTP request the station can read: {msg}"))
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _head_late(self) -> None:
        """Close the connection when no complete request head arrived in time (an answer in progress is kept)."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closed a connection: no request head within %g s", self.header_timeout_s)
            self.transport.close()


@dataclass(frozen=True)
class Listen:
    """Where and how the station listens: address, port (0: a free one), TLS files, trusted proxies."""

    host: str = "127.0.0.1"
    port: int = 0
    certfile: Path | None = None
    keyfile: Path | None = None
    forwarded_allow_ips: str | None = None  # comma-separated addresses or networks of the TLS proxies
    header_timeout_s: float = HEADER_TIMEOUT_S

    @property
    def behind_proxy(self) -> bool:
        """Whether a proxy serves the station (then it needs accounts wherever it binds)."""
        return self.forwarded_allow_ips is not None

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"


def bind(listen: Listen) -> socket.socket:
    """The listening socket, bound and listening before the server starts: a busy port is an error at once, and
    clients that come before the server runs wait in the backlog."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, listen: Listen) -> uvicorn.Server:
    """A uvicorn server of ``app`` with the station's limits; ValueError when only one TLS file is given."""
    if (listen.certfile is None) != (listen.keyfile is None):
        raise ValueError("direct TLS needs both --certfile and --keyfile")
    config = uvicorn.Config(
        app,
        http=partial(DeadlineH11Protocol, header_timeout_s=listen.header_timeout_s),  # type: ignore[arg-type]
        lifespan="off",
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        proxy_headers=listen.behind_proxy,
        forwarded_allow_ips=listen.forwarded_allow_ips or "",
        ssl_certfile=listen.certfile,
        ssl_keyfile=listen.keyfile,
        server_header=False,
        log_config=None,
        access_log=False,
    )
    config.load()  # a bad certificate or key fails here, before anything is served
    return uvicorn.Server(config)


@contextmanager
def serving_in_thread(app: Any, listen: Listen) -> Iterator[str]:
    """Serve ``app`` from a thread (tests, tools); yields the base URL once it answers, stops it after."""
    sock = bind(listen)
    server = make_server(app, listen)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        if not server.started:
            raise RuntimeError("the review station did not start")
        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        yield f"{listen.scheme}://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
