"""``video:PATH``, ``rtsp://...`` and ``v4l2:/dev/videoN`` through PyAV (FFmpeg).

A video file is read frame by frame, paced at ``frame_rate``: nothing in a file is live, so nothing is skipped.
A live stream (RTSP, a V4L2 device) is decoded by a thread of its own that keeps only the newest frame: a line
slower than the camera gets the latest picture, never a backlog of old ones, and the frames passed over are
counted (``skipped``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from musc_online.cameras.base import CameraError, CameraSource, CameraUnavailable, Grab, wait_until

RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}  # TCP: no smeared frames from lost UDP packets


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise CameraUnavailable(
            "video, RTSP and V4L2 sources need PyAV: pip install 'musc-online[line]' (or: pip install av)"
        ) from None
    return av


class VideoSource(CameraSource):
    """One video file, RTSP stream or V4L2 device; ``live`` streams keep only their newest frame."""

    def __init__(self, uri: str, target: str, *, live: bool, frame_rate: float = 0.0, device: bool = False) -> None:
        self.uri = uri
        self._target = target
        self._live = live
        self._device = device  # V4L2: FFmpeg's v4l2 input format
        self._period = 1.0 / frame_rate if frame_rate > 0 and not live else 0.0
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._next_at = 0.0
        self._reader: _NewestFrame | None = None

    @property
    def camera_id(self) -> str:
        return Path(self._target).stem if not self._target.startswith("rtsp") else self._target.split("/")[2]

    def open(self) -> None:
        av = _av()
        options = RTSP_OPTIONS if self._target.startswith("rtsp") else {}
        try:
            self._container = av.open(self._target, format="v4l2" if self._device else None, options=options)
        except (OSError, av.FFmpegError) as error:
            raise CameraError(f"cannot open {self._target}: {error}") from None
        if not self._container.streams.video:
            self.close()
            raise CameraUnavailable(f"{self._target} holds no video stream")
        self._frames = self._container.decode(video=0)
        self._next_at = time.monotonic()
        if self._live:
            self._reader = _NewestFrame(self._frames, av.FFmpegError)

    def grab(self, timeout_s: float) -> Grab | None:
        if self._frames is None:
            raise CameraError(f"{self.uri} is not open")
        if self._reader is not None:
            return self._reader.newest(timeout_s)
        if self._period:
            wait_until(self._next_at)
            self._next_at += self._period
        try:
            frame = next(self._frames)
        except _av().FFmpegError as error:
            raise CameraError(f"{self._target}: {error}") from None
        return Grab(frame.to_ndarray(format="rgb24"), time.time())

    @property
    def skipped(self) -> int:
        return self._reader.skipped if self._reader else 0

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        if self._container is not None:
            self._container.close()
            self._container = None
        self._frames = None


class _NewestFrame:
    """Decodes a live stream in a thread, holding only the newest frame (with the time it arrived)."""

    def __init__(self, frames: Iterator[Any], decode_error: type[Exception]) -> None:
        self.skipped = 0
        self._frames = frames
        self._decode_error = decode_error
        self._slot: Grab | None = None
        self._ended: BaseException | None = None
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="camera-decoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self._frames:
                grab = Grab(frame.to_ndarray(format="rgb24"), time.time())
                with self._changed:
                    if self._stopping:
                        return
                    self.skipped += self._slot is not None
                    self._slot = grab
                    self._changed.notify_all()
            ended: BaseException = StopIteration()
        except self._decode_error as error:
            ended = CameraError(f"stream broke: {error}")
        with self._changed:
            self._ended = ended
            self._changed.notify_all()

    def newest(self, timeout_s: float) -> Grab | None:
        """The newest frame not yet taken, waiting up to ``timeout_s``; the stream's end or error once drained."""
        with self._changed:
            self._changed.wait_for(lambda: self._slot is not None or self._ended is not None, timeout_s)
            grab, self._slot = self._slot, None
            if grab is None and self._ended is not None:
                raise self._ended
            return grab

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
        self._thread.join(timeout=5)
