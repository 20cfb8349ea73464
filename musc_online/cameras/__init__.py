"""Camera sources behind one interface (``CameraSource``: open, grab, close), opened from a URI by
``open_source`` and kept running through outages by ``CameraRunner``; ``musc-online camera`` pushes what they
grab to a line's daemon."""

from musc_online.cameras.base import CameraCounts, CameraError, CameraRunner, CameraSource, CameraUnavailable, Grab
from musc_online.cameras.registry import SCHEMES, open_source
from musc_online.cameras.settings import CameraSettings

__all__ = [
    "SCHEMES",
    "CameraCounts",
    "CameraError",
    "CameraRunner",
    "CameraSettings",
    "CameraSource",
    "CameraUnavailable",
    "Grab",
    "open_source",
]
