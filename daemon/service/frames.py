"""Turn one received message into a frame to score, or a refusal with a reason; both keep the frame's identity.

Pure apart from the clock: the caller records the receipt, queues accepted frames and answers refusals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musc_online.protocol import FrameHeader, ProtocolError, decode_frame

UNREADABLE = "?"  # the camera or frame id stored for a message whose header could not be read


@dataclass
class Received:
    """A message as it arrived: when, how big, and who sent it (as far as the header could tell)."""

    received_at: float
    size_bytes: int
    camera: str = UNREADABLE
    frame_id: str = UNREADABLE
    store_key: int = 0


@dataclass
class Accepted:
    """A decoded frame waiting for the scorer."""

    received: Received
    header: FrameHeader
    image: np.ndarray


@dataclass
class Refused:
    """A frame the daemon will not score, with a stable reason code and a message naming what is wrong."""

    received: Received
    code: str
    message: str
    identity: dict = field(default_factory=dict)


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
