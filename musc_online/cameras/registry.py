"""A camera source from its URI: the one place that knows which scheme opens which source."""

from __future__ import annotations

from musc_online.cameras.base import CameraSource, CameraUnavailable
from musc_online.cameras.settings import CameraSettings

SCHEMES = "genicam://ID, basler://SERIAL, video:PATH, rtsp://..., v4l2:/dev/videoN, folder:PATH, synthetic"


def open_source(settings: CameraSettings, *, seed: int = 0, defect_rate: float = 0.1) -> CameraSource:
    """The source ``settings.source`` names (not yet opened); CameraUnavailable for a URI no source takes.

    ``seed`` and ``defect_rate`` shape the synthetic parts. Each source's module is imported only when used:
    PyAV, Aravis and pypylon are optional.
    """
    uri = settings.source
    triggered = settings.trigger == "software"
    scheme, _, rest = uri.partition(":")
    if uri == "synthetic" or scheme == "folder":
        from musc_online.cameras.stills import StillsSource

        if scheme == "folder" and not rest:
            raise CameraUnavailable("folder: needs a path, e.g. folder:images/")
        folder = None if uri == "synthetic" else rest
        return StillsSource(uri, folder, settings.frame_rate, triggered=triggered, seed=seed, defect_rate=defect_rate)
    if triggered and scheme in ("video", "rtsp", "v4l2"):
        raise CameraUnavailable(f'{uri} cannot be software-triggered; set camera.trigger = "free_run"')
    if scheme == "video":
        from musc_online.cameras.video import VideoSource

        return VideoSource(uri, _nonempty(rest, uri, "a file"), live=False, frame_rate=settings.frame_rate)
    if scheme in ("rtsp", "rtsps"):
        from musc_online.cameras.video import VideoSource

        return VideoSource(uri, uri, live=True)
    if scheme == "v4l2":
        from musc_online.cameras.video import VideoSource

        return VideoSource(uri, _nonempty(rest, uri, "a device such as /dev/video0"), live=True, device=True)
    hardware = {"frame_rate": settings.frame_rate, "triggered": triggered}
    hardware |= {"exposure_us": settings.exposure_us, "gain_db": settings.gain_db}
    if scheme == "genicam":
        from musc_online.cameras.genicam import GenicamSource

        return GenicamSource(uri, rest.removeprefix("//"), pixel_format=settings.pixel_format, **hardware)
    if scheme == "basler":
        from musc_online.cameras.basler import BaslerSource

        return BaslerSource(uri, rest.removeprefix("//"), **hardware)
    raise CameraUnavailable(f"unknown camera source {uri!r}; expected one of: {SCHEMES}")


def _nonempty(rest: str, uri: str, what: str) -> str:
    if not rest:
        raise CameraUnavailable(f"{uri!r} names no {what}")
    return rest
