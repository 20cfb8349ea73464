"""``basler://SERIAL``: Basler cameras through pypylon, Basler's SDK (optional: ``pip install 'musc-online[basler]'``).

``basler://`` opens the first camera found. Frames are converted to RGB8 (or kept Mono8) by pylon's own
converter; free run or software trigger; exposure and gain set when given.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from musc_online.cameras.base import CameraError, CameraSource, CameraUnavailable, Grab


def _pylon() -> Any:
    try:
        from pypylon import genicam, pylon
    except ImportError:
        raise CameraUnavailable(
            "basler:// needs pypylon, Basler's SDK for Python: pip install 'musc-online[basler]' "
            "(or open the camera through Aravis as genicam://SERIAL)"
        ) from None
    return pylon, genicam


class BaslerSource(CameraSource):
    """One Basler camera through pypylon."""

    triggerable = True

    def __init__(
        self,
        uri: str,
        serial: str | None,
        *,
        frame_rate: float = 0.0,
        triggered: bool = False,
        exposure_us: float | None = None,
        gain_db: float | None = None,
    ) -> None:
        self.uri = uri
        self.serial = serial or None
        self.frame_rate, self.triggered = frame_rate, triggered
        self.exposure_us, self.gain_db = exposure_us, gain_db
        self._camera: Any = None
        self._converter: Any = None

    @property
    def camera_id(self) -> str:
        return f"Basler-{self.serial}" if self.serial else "basler"

    def open(self) -> None:
        pylon, genicam = _pylon()
        try:
            factory = pylon.TlFactory.GetInstance()
            info = pylon.DeviceInfo()
            if self.serial:
                info.SetSerialNumber(self.serial)
            self._camera = pylon.InstantCamera(factory.CreateFirstDevice(info))
            self._camera.Open()
            self.serial = self._camera.GetDeviceInfo().GetSerialNumber()
            nodes = self._camera
            if self.exposure_us is not None:
                nodes.ExposureTime.SetValue(self.exposure_us)
            if self.gain_db is not None:
                nodes.Gain.SetValue(self.gain_db)
            if self.triggered:
                nodes.TriggerMode.SetValue("On")
                nodes.TriggerSource.SetValue("Software")
            elif self.frame_rate > 0:
                nodes.AcquisitionFrameRateEnable.SetValue(True)
                nodes.AcquisitionFrameRate.SetValue(self.frame_rate)
            self._converter = pylon.ImageFormatConverter()
            self._converter.OutputPixelFormat = pylon.PixelType_RGB8packed
            self._camera.StartGrabbing(pylon.GrabStrategy_LatestImageOnly)
        except genicam.GenericException as error:
            self.close()
            raise CameraError(f"cannot open {self.uri}: {error}") from None

    def grab(self, timeout_s: float) -> Grab | None:
        pylon, genicam = _pylon()
        if self._camera is None:
            raise CameraError(f"{self.uri} is not open")
        try:
            result = self._camera.RetrieveResult(int(timeout_s * 1000), pylon.TimeoutHandling_Return)
        except genicam.GenericException as error:
            raise CameraError(f"{self.uri}: {error}") from None
        if not result.IsValid():
            return None
        try:
            if not result.GrabSucceeded():
                raise CameraError(f"{self.uri}: grab failed: {result.GetErrorDescription()}")
            image = self._converter.Convert(result).GetArray()
            return Grab(image, time.time(), result.GetBlockID())  # the camera's clock ticks free: stamp arrival
        finally:
            result.Release()

    def trigger(self) -> None:
        if self._camera is None:
            raise CameraError(f"{self.uri} is not open")
        self._camera.ExecuteSoftwareTrigger()

    def close(self) -> None:
        if self._camera is not None:
            with contextlib.suppress(Exception):  # a camera already gone is released all the same
                self._camera.Close()
        self._camera = None
