"""The ``[camera]`` section: which camera a line's camera source opens and how it grabs, and which part of its
frames counts (the care area, ``roi``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musc_online.roi import CareArea, Polygons
from musc_online.settings import SettingError, at_least, check_fields, each, knob, one_of, positive


@dataclass(frozen=True)
class CameraSettings:
    """The line's camera source (`musc-online camera`): what it opens, how it grabs, how it reopens; its care area."""

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
    care_mask: Path | None = knob(
        None,
        "Region of interest: a PNG over the frame whose non-black pixels are the care area; only they make a frame's "
        "score and the band (every pixel is still scored and shown). Any size of the frame's aspect (checked against "
        "frame_size when that is set); empty = the whole frame. Read at start: a missing or empty mask stops the line.",
    )
    care_polygons: Polygons = knob(
        (),
        "Region of interest as polygons instead of care_mask: [[[x, y], [x, y], [x, y], ...], ...] in the frame's "
        "pixels (0,0 top left), at least 3 points each, their union is the care area. Needs frame_size.",
    )
    frame_size: tuple[int, ...] = knob(
        (),
        "The camera's frame size [width, height] in pixels: what care_polygons are drawn at (and care_mask's aspect "
        "is checked against). Given here, not taken from the first frame, so a bad area stops the line at start.",
        each(at_least(1)),
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.frame_size and len(self.frame_size) != 2:
            raise SettingError(("frame_size",), "must be [width, height]")
        if self.care_polygons and self.care_mask is not None:
            raise SettingError(("care_polygons", "care_mask"), "and care_mask cannot both be set: choose one")
        if self.care_polygons and not self.frame_size:
            raise SettingError(("care_polygons", "frame_size"), "needs frame_size = [width, height] to be drawn at")
        if self.care_polygons:
            self.care_area()  # drawn to check it: points on the frame, 3 or more each, not empty

    def care_area(self, image_size: int | None = None) -> CareArea | None:
        """The care area set here (reads care_mask), or None for the whole frame; SettingError naming the setting
        when it is unusable, or keeps no pixel at the model's ``image_size`` when that is given."""
        frame_size = (self.frame_size[0], self.frame_size[1]) if self.frame_size else None
        care = None
        try:
            if self.care_mask is not None:
                care = CareArea.from_png(self.care_mask, frame_size)
            elif self.care_polygons and frame_size is not None:
                care = CareArea.from_polygons(self.care_polygons, frame_size)
            if care is not None and image_size:
                care.at(image_size)  # the map the image score is taken on
        except ValueError as error:
            raise SettingError("care_mask" if self.care_mask is not None else "care_polygons", str(error)) from None
        return care
