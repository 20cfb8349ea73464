"""One received message on its way through the daemon: a frame to score, or a refusal with a reason.

Also what is kept of a frame once decoded (the model's input and a picture of bounded size, never the
original, so queued frames weigh what they will be scored at), and the age budget: by when each frame
must be answered, counted from the camera's timestamp, with a guard against cameras whose clocks run
ahead of the daemon's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from musc_online.protocol import FrameHeader, ProtocolError, decode_frame

UNREADABLE = "?"  # the camera or frame id stored for a message whose header could not be read


@dataclass
class Received:
    """A message as it arrived: its number in this run, when, how big, and who sent it (as far as known)."""

    seq: int
    received_at: float
    size_bytes: int
    camera: str = UNREADABLE
    frame_id: str = UNREADABLE


@dataclass
class Accepted:
    """A decoded frame waiting for the scorer, and when its answer is due (epoch seconds).

    Once ingest has kept it (``FrameKeeper``), ``image`` is what the scorer scores, the frame at the model's input,
    and ``picture`` the frame as its picture shows it; without a ``picture``, ``image`` is the picture too.
    """

    received: Received
    header: FrameHeader
    image: np.ndarray
    deadline: float = math.inf
    picture: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of pixels the frame holds: what the scoring queue's byte bound counts."""
        return self.image.nbytes + (0 if self.picture is None else self.picture.nbytes)

    @property
    def review(self) -> np.ndarray:
        """The frame for its picture."""
        return self.image if self.picture is None else self.picture


@dataclass
class Refused:
    """A frame the daemon will not score, with a stable reason code and a message naming what is wrong.

    ``details`` travel with the refusal on the wire (for ``late``: how old the frame was and by how much).
    """

    received: Received
    code: str
    message: str
    identity: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def identify(parts: list[bytes], received: Received) -> None:
    """Fill in camera and frame id from the header when it can be read (even if the frame is then refused)."""
    if not parts:
        return
    try:
        header = FrameHeader.parse(parts[0])
    except ProtocolError as error:
        identity = error.frame or {}
    else:
        identity = header.identity()
    received.camera = str(identity.get("camera", UNREADABLE))
    received.frame_id = str(identity.get("frame_id", UNREADABLE))


def examine(parts: list[bytes], received: Received, line: int, max_pixels: int) -> Accepted | Refused:
    """Validate and decode a frame message for ``line``."""
    try:
        header, image = decode_frame(parts, max_pixels=max_pixels)
    except ProtocolError as error:
        return Refused(received, error.code, error.message, error.frame)
    if header.line != line:
        return Refused(
            received,
            "wrong_line",
            f"frame is for line {header.line}, this daemon serves line {line}",
            header.identity(),
        )
    return Accepted(received, header, image)


def picture_of(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` shrunk, aspect kept, so that its longer side is at most ``side`` pixels; itself when no larger."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


class FrameKeeper:
    """What ingest keeps of a decoded frame: the model's input and a picture, never the original.

    ``fit`` is the backbone's own resize to its input (``Backbone.fit``; with tiles on, the frame at the tiling
    resolution: ``ViewExtractor.fit``), so the scorer, which resizes what it is
    given the same way, scores the kept input exactly as it would score the original frame. The picture is the
    frame at most ``picture_side`` pixels on its longer side: a reviewer's picture, and what a correction of a
    frame no longer in the scorer's memory is learnt from.
    """

    def __init__(self, fit: Callable[[np.ndarray], np.ndarray], picture_side: int) -> None:
        self.fit = fit
        self.picture_side = picture_side

    def __call__(self, frame: Accepted) -> Accepted | Refused:
        """``frame`` with its original replaced by the input and the picture (its deadline unchanged); refused
        ``wrong_shape`` when the scorer cannot take a frame of its size (tiles cut it unlike the line's references)."""
        original = frame.image
        try:
            frame.image = self.fit(original)
        except ValueError as error:
            return Refused(frame.received, "wrong_shape", str(error), frame.header.identity())
        frame.picture = picture_of(original, self.picture_side)
        return frame


class AgeBudget:
    """When a frame's answer is due: ``max_age_ms`` after the camera took it (0: no budget).

    Camera and daemon clocks differ a little. A timestamp more than ``max_skew_ms`` ahead of the daemon's
    clock cannot be trusted, so such a frame's age is counted from its arrival instead and ``on_skew`` is
    told (camera, seconds ahead). A camera clock that runs behind cannot be told apart from a frame that
    waited on the way, and its frames are treated as old: answered ``late`` rather than scored stale.
    """

    def __init__(self, max_age_ms: float, max_skew_ms: float, on_skew: Callable[[str, float], None]) -> None:
        self.max_age_s = max_age_ms / 1000
        self.max_skew_s = max_skew_ms / 1000
        self.on_skew = on_skew

    def deadline(self, frame: Accepted) -> float:
        """The epoch second by which ``frame`` must be answered (infinity without a budget)."""
        if not self.max_age_s:
            return math.inf
        taken, arrived = frame.header.timestamp, frame.received.received_at
        if taken - arrived > self.max_skew_s:
            self.on_skew(frame.header.camera, taken - arrived)
            taken = arrived
        return taken + self.max_age_s

    def late(self, frame: Accepted, now: float, expected_s: float = 0.0) -> Refused:
        """The ``late`` refusal of a frame that is, or by the end of ``expected_s`` more work would be, past due."""
        started = frame.deadline - self.max_age_s
        age_ms, over_ms = 1e3 * (now - started), 1e3 * (now + expected_s - frame.deadline)
        when = "is" if expected_s <= 0 or now >= frame.deadline else "would be, once scored,"
        message = (
            f"frame is {age_ms:.0f} ms old and {when} {over_ms:.0f} ms past the line's age budget of "
            f"{1e3 * self.max_age_s:.0f} ms (pipeline.max_age_ms), counted from the camera's timestamp"
        )
        details = {"age_ms": round(age_ms, 1), "late_by_ms": round(over_ms, 1), "budget_ms": 1e3 * self.max_age_s}
        return Refused(frame.received, "late", message, frame.header.identity(), details)
