"""Client library for a line daemon: push frames (cameras), follow decisions (PLCs, dashboards), send control.

Each class takes the line's ``TransportSettings`` (or a plain endpoint string) and optional CURVE client keys.
The wire format is in ``musc_online.protocol`` and ``docs/protocol.md``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from musc_online.messages import control_request, line_topic, parse_control_reply, parse_decision_message
from musc_online.protocol import encode_frame
from musc_online.transport import (
    SENDER_LINGER_MS,
    Context,
    CurveClientKeys,
    Socket,
    TransportSettings,
    connect_control,
    connect_decisions,
    connect_frames,
    recv_parts,
    send_parts,
)

__all__ = [
    "AnswerCollector",
    "ControlClient",
    "CurveClientKeys",
    "DecisionSubscriber",
    "FrameSender",
    "TransportSettings",
]
SUBSCRIBE_SETTLE_S = 0.5  # a new subscription takes a moment to reach the publisher (ZeroMQ's "slow joiner")


class FrameSender:
    """Pushes one line's camera frames to the daemon; when the daemon lags, ``send`` waits instead of dropping."""

    def __init__(
        self,
        target: TransportSettings | str,
        *,
        line: int,
        keys: CurveClientKeys | None = None,
        send_timeout_ms: int | None = None,
        ctx: Context | None = None,
    ) -> None:
        settings = target if isinstance(target, TransportSettings) else TransportSettings()
        self.endpoint = target if isinstance(target, str) else settings.frames_endpoint
        self.line = line
        self.max_message_bytes = settings.max_message_bytes
        self.send_timeout_ms = send_timeout_ms
        self._sock = connect_frames(self.endpoint, hwm=settings.hwm, keys=keys, ctx=ctx)

    def send(
        self,
        image: np.ndarray,
        camera: str,
        frame_id: str,
        encoding: str = "jpeg",
        timestamp: float | None = None,
        jpeg_quality: int = 95,
    ) -> None:
        """Encode and send one uint8 image (H, W[, C]); ``timestamp`` defaults to now."""
        parts = encode_frame(
            image,
            line=self.line,
            camera=camera,
            frame_id=frame_id,
            encoding=encoding,
            timestamp=timestamp,
            jpeg_quality=jpeg_quality,
        )
        if len(parts[1]) > self.max_message_bytes:
            # The daemon's socket would cut the connection and this frame would never be answered.
            raise ValueError(
                f"frame {frame_id!r} from {camera!r} encodes to {len(parts[1])} bytes, over the daemon's "
                f"max_message_bytes of {self.max_message_bytes}; send a smaller image or use jpeg"
            )
        self.send_parts(parts)

    def send_parts(self, parts: list[bytes]) -> None:
        """Send an already built message as is, unchecked (tests and fuzzing use it to send malformed frames)."""
        if not send_parts(self._sock, parts, self.send_timeout_ms):
            raise TimeoutError(f"the daemon at {self.endpoint} took no frame within {self.send_timeout_ms} ms")

    def close(self, linger_ms: int = SENDER_LINGER_MS) -> None:
        """Close the socket, giving frames still queued ``linger_ms`` to reach the daemon."""
        self._sock.close(linger=linger_ms)

    def __enter__(self) -> FrameSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DecisionSubscriber:
    """Follows one line's decisions and refusals; each message is its JSON payload plus its ``topic``.

    Like any ZeroMQ subscriber it sees only what is published after it has connected.
    """

    def __init__(
        self,
        target: TransportSettings | str,
        line: int,
        *,
        keys: CurveClientKeys | None = None,
        ctx: Context | None = None,
    ) -> None:
        self.endpoint = target.decisions_endpoint if isinstance(target, TransportSettings) else target
        self.line = line
        self._sock: Socket = connect_decisions(self.endpoint, line_topic(line), keys=keys, ctx=ctx)

    def receive(self, timeout_ms: int | None = None) -> dict[str, Any] | None:
        """The next message (``topic`` is ``line.<N>.decision`` or ``line.<N>.refusal``), or None on timeout."""
        parts = recv_parts(self._sock, timeout_ms)
        if parts is None:
            return None
        topic, payload = parse_decision_message(parts)
        return {**payload, "topic": topic}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every message from now on, waiting as long as it takes for each."""
        while True:
            message = self.receive()
            if message is not None:
                yield message

    def close(self) -> None:
        """Close the socket."""
        self._sock.close(linger=0)

    def __enter__(self) -> DecisionSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AnswerCollector:
    """Gathers a line's decisions and refusals in a background thread, each with its arrival time: for tools and
    tests that send frames and then wait for their answers. It returns once the subscription has settled, so
    frames sent after it are seen."""

    def __init__(self, target: TransportSettings | str, line: int, *, keys: CurveClientKeys | None = None) -> None:
        self.all: list[tuple[float, dict[str, Any]]] = []  # (arrival time, message), unreadable frame ids included
        self.arrived: dict[str, tuple[float, dict[str, Any]]] = {}  # frame id -> its first answer
        self._subscriber = DecisionSubscriber(target, line, keys=keys)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(SUBSCRIBE_SETTLE_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._subscriber.receive(timeout_ms=100)
            if message is not None:
                entry = (time.time(), message)
                self.all.append(entry)
                self.arrived.setdefault(str(message.get("frame_id")), entry)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every answer so far, in arrival order, with its arrival time as ``arrived_at``."""
        return [{**message, "arrived_at": at} for at, message in list(self.all)]

    def wait_for(self, frame_ids: list[str], stall_s: float) -> list[str]:
        """Wait until every frame is answered or nothing arrives for ``stall_s``; returns the unanswered ids."""
        last_count, last_change = -1, time.monotonic()
        while True:
            missing = [i for i in frame_ids if i not in self.arrived]
            if not missing or time.monotonic() - last_change > stall_s:
                return missing
            if len(self.all) != last_count:
                last_count, last_change = len(self.all), time.monotonic()
            time.sleep(0.01)

    def wait_for_count(self, count: int, timeout_s: float) -> list[dict[str, Any]]:
        """``messages`` once there are ``count`` of them, or when ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        while len(self.all) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        self._thread.join()
        self._subscriber.close()


class ControlClient:
    """Sends control commands (status, pause, resume, reload_judges, ...) to a line daemon and waits for replies."""

    def __init__(
        self, target: TransportSettings | str, *, keys: CurveClientKeys | None = None, ctx: Context | None = None
    ) -> None:
        self.endpoint = target.control_endpoint if isinstance(target, TransportSettings) else target
        self._keys = keys
        self._ctx = ctx
        self._sock: Socket | None = None

    def call(self, command: str, timeout_ms: int = 5000, **args: Any) -> dict[str, Any]:
        """Send ``command`` with ``args``; returns the reply ``{"ok": ..., "result" | "error": ...}``.

        Raises TimeoutError when the daemon does not answer within ``timeout_ms``.
        """
        request = control_request(command, **args)
        if self._sock is None:
            self._sock = connect_control(self.endpoint, keys=self._keys, ctx=self._ctx)
        reply = recv_parts(self._sock, timeout_ms) if send_parts(self._sock, [request], timeout_ms) else None
        if reply is None:
            # A REQ socket that missed its reply cannot send again: drop it, the next call connects anew.
            self._sock.close(linger=0)
            self._sock = None
            raise TimeoutError(f"the daemon at {self.endpoint} did not answer {command!r} within {timeout_ms} ms")
        return parse_control_reply(reply)

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
