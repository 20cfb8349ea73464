"""A real daemon process on loopback with a temporary store, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musc_online.client import ControlClient
from musc_online.transport import CurveClientKeys, TransportSettings, free_port_block

LINE = 3
# Small and fast, still the real pretrained backbone: the end-to-end tests check plumbing, not accuracy.
FAST = {
    "MUSC_MODEL__IMAGE_SIZE": "128",
    "MUSC_ONLINE__WINDOW": "16",
    "MUSC_ONLINE__JUDGES_PER_FRAME": "4",
    "MUSC_ONLINE__CALIBRATION_SCORES": "16",
    "MUSC_MUSC__R_LIST": "[1, 3]",
    "MUSC_PIPELINE__MAX_IMAGE_PIXELS": "1000000",
    "MUSC_ARTIFACTS__KEEP_OK_EVERY": "0",
    # These tests push floods to check plumbing: without an age budget every frame waits its turn (backpressure).
    # The budget's own behaviour is tested in-process (tests/daemon/service/).
    "MUSC_PIPELINE__MAX_AGE_MS": "0",
}


_STARTED: list[subprocess.Popen] = []  # every daemon process a test started, killed after the test
IN_PROCESS: list = []  # every in-process line a test started (inprocess.InProcessLine), stopped after the test


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test():
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()
    while IN_PROCESS:
        IN_PROCESS.pop().stop()


class DaemonProcess:
    """``musc-daemon start`` in a subprocess, with its own data folder and port block."""

    def __init__(
        self, data_dir: Path, extra_env: dict[str, str] | None = None, keys: CurveClientKeys | None = None
    ) -> None:
        self.data_dir = data_dir
        self.keys = keys  # the client identity control calls use when the daemon runs with CURVE
        self.base_port = free_port_block(LINE)
        self.env = {
            **os.environ,
            **FAST,
            "MUSC_PATHS__DATA_DIR": str(data_dir),
            "MUSC_TRANSPORT__BASE_PORT": str(self.base_port),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.settings = TransportSettings.for_line(LINE, self.base_port)
        self.log = data_dir / "daemon.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> DaemonProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(LINE), "--no-log-json"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
        _STARTED.append(self.process)
        deadline = time.monotonic() + timeout_s
        with ControlClient(self.settings, keys=self.keys) as control:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"daemon exited early:\n{self.log.read_text()}"
                try:
                    if control.call("status", timeout_ms=500)["ok"]:
                        return self
                except TimeoutError:
                    pass
        raise AssertionError(f"daemon did not answer within {timeout_s} s:\n{self.log.read_text()}")

    def call(self, command: str, **args):
        with ControlClient(self.settings, keys=self.keys) as control:
            return control.call(command, timeout_ms=30_000, **args)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)


@pytest.fixture
def daemon_process(tmp_path):
    daemon = DaemonProcess(tmp_path / "lines").start()
    yield daemon
    if daemon.process and daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.wait()


def wait_until(condition, what: str, timeout_s: float = 60) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
