"""A real Mosquitto broker on a free loopback port, with its own configuration and persistence folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """``mosquitto`` listening on 127.0.0.1:``port``; sessions persist across ``stop`` and ``start``."""

    def __init__(self, folder: Path, extra: str = "allow_anonymous true\n") -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nuser root\npersistence true\n"  # root: keep access to this folder
            f"persistence_location {folder}/\nlog_dest file {folder}/mosquitto.log\n{extra}"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "mosquitto exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # SIGTERM: mosquitto saves its sessions to the persistence file
        self.process.wait(timeout=10)


@pytest.fixture
def broker(tmp_path):
    if not Path(MOSQUITTO).is_file():
        pytest.skip("mosquitto is not installed (Debian: apt install mosquitto)")
    broker = Broker(tmp_path / "broker").start()
    yield broker
    if broker.process and broker.process.poll() is None:
        broker.process.kill()
        broker.process.wait()
