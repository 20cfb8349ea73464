"""The ``[camera]`` section: which camera a line's camera source opens and how it grabs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from musc_online.settings import at_least, check_fields, knob, one_of, positive


@dataclass(frozen=True)
class CameraSettings:
    """The line's camera source (`musc-online camera`): what it opens, how it grabs, how it reopens."""

    source: str = knob(
        "synthetic",
        "genicam://DEVICE-ID (genicam:// = the first camera found; an IP address opens a GigE camera without "
        "discovery), basler://SERIAL, video:PATH, rtsp://..., v4l2:/dev/videoN, folder:PATH or synthetic.",
    )
    name: str | None = knob(None, "The camera's id in the frame headers; empty = the camera's own (its device id).")
    trigger: Literal["free_run", "software"] = knob(
        "free_run",
        "free_run: the camera grabs at frame_rate; software: one frame per trigger (the PLC's OPC UA Trigger).",
        one_of("free_run", "software"),
    )
    frame_rate: float = knob(
        5.0,
        "Frames per second in free run (GenICam, folder, synthetic, video files); 0 = as fast as it goes.",
        at_least(0),
    )
    exposure_us: float | None = knob(
        None, "GenICam/Basler exposure time in microseconds; empty = the camera's.", positive
    )
    gain_db: float | None = knob(None, "GenICam/Basler gain in dB; empty = the camera's.", at_least(0))
    pixel_format: str | None = knob(
        None, "GenICam pixel format: Mono8, RGB8, BayerRG8, BayerBG8, BayerGR8 or BayerGB8; empty = the camera's."
    )
    encoding: Literal["jpeg", "png", "raw"] = knob(
        "jpeg", "How frames travel to the daemon: jpeg, png or raw.", one_of("jpeg", "png", "raw")
    )
    grab_timeout_s: float = knob(
        2.0, "A camera that delivers no frame for this long (in free run) is taken as lost and reopened.", positive
    )
    reopen_min_s: float = knob(0.5, "First wait before reopening a lost camera; doubled on each failure.", positive)
    reopen_max_s: float = knob(10.0, "Longest wait between attempts to reopen a lost camera.", positive)

    def __post_init__(self) -> None:
        check_fields(self)
