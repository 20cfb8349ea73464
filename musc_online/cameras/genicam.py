"""``genicam://DEVICE-ID``: GigE Vision and USB3 Vision cameras through Aravis (GObject introspection).

``genicam://`` opens the first camera found, ``genicam://ID`` the camera of that Aravis device id (such as
``Basler-21234567``), serial or IP address. An IP address is opened directly: no discovery broadcast leaves the
machine. Free run at ``frame_rate`` or one frame per software trigger; exposure, gain and pixel format are set
when given. Mono8 arrives grey, RGB8 as is, and the four 8-bit Bayer formats are demosaiced (``bayer``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Any

import numpy as np

from musc_online.cameras.base import CameraError, CameraSource, CameraUnavailable, Grab
from musc_online.cameras.bayer import BAYER_PATTERNS, demosaic

GVCP_PORT = 3956  # GigE Vision's control port
STREAM_BUFFERS = 4  # buffers queued on the stream: enough for a short hiccup, never a backlog of old frames
CLOCK_AGREES_S = 1.0  # a camera clock within this of the host's is taken as synchronised (PTP): its stamps are used


def _aravis() -> Any:
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError):
        raise CameraUnavailable(
            "genicam:// needs Aravis 0.8 and PyGObject: apt install gir1.2-aravis-0.8, then "
            "pip install 'musc-online[line]' (or use Debian's python3-gi)"
        ) from None
    return Aravis


def is_address(device: str) -> bool:
    """True when ``device`` is an IP address (opened without discovery)."""
    try:
        ipaddress.ip_address(device)
    except ValueError:
        return False
    return True


class GenicamSource(CameraSource):
    """One GenICam camera through Aravis."""

    triggerable = True

    def __init__(
        self,
        uri: str,
        device: str | None,
        *,
        frame_rate: float = 0.0,
        triggered: bool = False,
        exposure_us: float | None = None,
        gain_db: float | None = None,
        pixel_format: str | None = None,
    ) -> None:
        self.uri = uri
        self.device = device or None
        self.frame_rate = frame_rate
        self.triggered = triggered
        self.exposure_us, self.gain_db, self.pixel_format = exposure_us, gain_db, pixel_format
        self._camera: Any = None
        self._stream: Any = None
        self._id = device or "genicam"

    @property
    def camera_id(self) -> str:
        return self._id

    def open(self) -> None:
        aravis = _aravis()
        try:
            self._camera = _connect(aravis, self.device)
            self._id = self._camera.get_device_id() or self._id
            self._configure(aravis)
            self._stream = self._camera.create_stream(None, None)
            if self._stream is None:
                raise CameraError(f"{self.uri}: the camera gave no stream")
            payload = self._camera.get_payload()
            for _ in range(STREAM_BUFFERS):
                self._stream.push_buffer(aravis.Buffer.new_allocate(payload))
            self._camera.start_acquisition()
        except Exception as error:  # GLib.Error and TypeError from the bindings: all mean "cannot open"
            self.close()
            if isinstance(error, CameraError):
                raise
            raise CameraError(f"cannot open {self.uri}: {error}") from None

    def _configure(self, aravis: Any) -> None:
        camera = self._camera
        if self.pixel_format:
            available = camera.dup_available_pixel_formats_as_strings()
            if self.pixel_format not in available:
                raise CameraUnavailable(f"{self.uri} offers {', '.join(available)}, not {self.pixel_format}")
            camera.set_pixel_format_from_string(self.pixel_format)
        if self.exposure_us is not None:
            camera.set_exposure_time(self.exposure_us)
        if self.gain_db is not None:
            camera.set_gain(self.gain_db)
        camera.set_acquisition_mode(aravis.AcquisitionMode.CONTINUOUS)
        if self.triggered:
            camera.set_trigger("Software")
        else:
            camera.clear_triggers()
            if self.frame_rate > 0:
                camera.set_frame_rate(self.frame_rate)

    def grab(self, timeout_s: float) -> Grab | None:
        if self._stream is None:
            raise CameraError(f"{self.uri} is not open")
        buffer = self._stream.timeout_pop_buffer(int(timeout_s * 1e6))
        if buffer is None:
            return None
        try:
            status = buffer.get_status().value_nick
            if status != "success":
                raise CameraError(f"{self.uri}: frame {buffer.get_frame_id()} arrived broken ({status})")
            return Grab(_image(buffer), _exposure_time(buffer), buffer.get_frame_id())
        finally:
            self._stream.push_buffer(buffer)

    def trigger(self) -> None:
        if self._camera is None:
            raise CameraError(f"{self.uri} is not open")
        self._camera.software_trigger()

    def close(self) -> None:
        if self._camera is not None:
            with contextlib.suppress(Exception):  # a camera already gone cannot be stopped; it is released anyway
                self._camera.stop_acquisition()
        self._stream = None
        self._camera = None


def _connect(aravis: Any, device: str | None) -> Any:
    """The camera ``device`` names; an IP address is opened directly, without any discovery broadcast."""
    if device is None or not is_address(device):
        return aravis.Camera.new(device)
    from gi.repository import Gio

    with socket.socket(socket.AF_INET6 if ":" in device else socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((device, GVCP_PORT))  # no packet: it only asks the routing table which address we use
        local = probe.getsockname()[0]
    address = Gio.InetAddress.new_from_string
    return aravis.Camera.new_with_device(aravis.GvDevice.new(address(local), address(device)))


def _exposure_time(buffer: Any) -> float:
    """When the frame was exposed: the camera's stamp when its clock agrees with ours (PTP), else its arrival."""
    arrived = buffer.get_system_timestamp() / 1e9
    exposed = buffer.get_timestamp() / 1e9
    return exposed if abs(exposed - arrived) < CLOCK_AGREES_S else arrived


def _image(buffer: Any) -> np.ndarray:
    """The buffer's pixels as uint8 grey or RGB; CameraError for formats not handled."""
    width, height = buffer.get_image_width(), buffer.get_image_height()
    name = PIXEL_FORMATS.get(buffer.get_image_pixel_format())
    data = np.frombuffer(buffer.get_image_data(), dtype=np.uint8)
    if name == "Mono8":
        return data[: width * height].reshape(height, width).copy()
    if name == "RGB8":
        return data[: width * height * 3].reshape(height, width, 3).copy()
    if name in BAYER_PATTERNS:
        return demosaic(data[: width * height].reshape(height, width), name)
    code = buffer.get_image_pixel_format()
    raise CameraError(f"pixel format 0x{code:08x} is not handled; set camera.pixel_format to Mono8, RGB8 or Bayer")


# GenICam PFNC codes of the formats handled (the standard's numbers; Aravis exposes the same ones).
PIXEL_FORMATS = {
    0x01080001: "Mono8",
    0x02180014: "RGB8",
    0x01080008: "BayerGR8",
    0x01080009: "BayerRG8",
    0x0108000A: "BayerGB8",
    0x0108000B: "BayerBG8",
}
