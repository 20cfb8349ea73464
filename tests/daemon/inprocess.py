"""A ``LineDaemon`` inside the test process: tiny random backbone, temporary SQLite file, OS-chosen ports.

Driven through the real client library over real ZeroMQ sockets, so the service core is tested in seconds,
with access to its internals where a test needs to provoke a fault.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from daemon.config import load_config
from daemon.service import LineDaemon
from daemon.store import Store
from musc_online.client import AnswerCollector, ControlClient, FrameSender
from musc_online.transport import TransportSettings

from .conftest import IN_PROCESS, LINE, free_port_block

TINY = {
    "MUSC_MODEL__BACKBONE": "test_random_vit",
    "MUSC_MODEL__IMAGE_SIZE": "64",
    "MUSC_MODEL__DEVICE": "cpu",
    "MUSC_MUSC__R_LIST": "[1, 3]",
    "MUSC_ONLINE__WINDOW": "8",
    "MUSC_ONLINE__JUDGES_PER_FRAME": "2",
    "MUSC_ONLINE__CALIBRATION_SCORES": "8",
    "MUSC_ONLINE__HISTORY": "8",
    "MUSC_TRANSPORT__BASE_PORT": "0",
    "MUSC_ARTIFACTS__KEEP_OK_EVERY": "0",
}


def frame(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A random RGB frame; the tiny random backbone gives it meaningless but deterministic features."""
    return rng.integers(90, 140, (size, size, 3), dtype=np.uint8)


def good_parts(folder: Path, count: int, seed: int) -> Path:
    """A folder of ``count`` frames as PNG files part0.png ... (judges for a line to load), made if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(frame(rng)).save(folder / f"part{i}.png")
    return folder


class InProcessLine:
    """One line's daemon on a thread of this process; ``stop`` shuts it down through its control socket."""

    store_url: str | None = None  # the store every line of a test uses (tests/daemon/service runs each on both)

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        env = {**TINY, "MUSC_PATHS__DATA_DIR": str(data_dir)}
        if InProcessLine.store_url:
            env["MUSC_STORE__URL"] = InProcessLine.store_url
        env.update({f"MUSC_{key.upper().replace('.', '__')}": str(value) for key, value in settings.items()})
        self.env = env
        self.config = load_config(LINE, env=env)
        self.daemon = LineDaemon(self.config)
        self.settings = self.daemon.sockets.settings
        self.collector = AnswerCollector(self.settings, LINE)
        self._thread = threading.Thread(target=self.daemon.run, kwargs={"handle_signals": False}, daemon=True)
        self._thread.start()
        IN_PROCESS.append(self)
        deadline = time.monotonic() + 30
        while not self.daemon.ready and time.monotonic() < deadline:
            time.sleep(0.01)

    @staticmethod
    @contextmanager
    def store_only(data_dir: Path) -> Iterator[tuple[Store, TransportSettings]]:
        """The line's store while its daemon is down, and control settings on a port nobody listens on."""
        url = InProcessLine.store_url or f"sqlite:///{data_dir / f'line-{LINE}' / 'store.db'}"
        with Store.open(url) as store:
            yield store, TransportSettings.for_line(LINE, free_port_block(LINE))

    @property
    def store(self) -> Store:
        return self.daemon.store

    def call(self, command: str, **args: Any) -> dict[str, Any]:
        with ControlClient(self.settings) as control:
            return control.call(command, timeout_ms=30_000, **args)

    def send(self, frames: dict[str, np.ndarray], **options: Any) -> None:
        with FrameSender(self.settings, line=LINE) as sender:
            for frame_id, image in frames.items():
                sender.send(
                    image,
                    camera=options.get("camera", "cam-1"),
                    frame_id=frame_id,
                    encoding="png",
                    timestamp=options.get("timestamp"),
                )

    def send_parts(self, messages: list[list[bytes]]) -> None:
        with FrameSender(self.settings, line=LINE) as sender:
            for parts in messages:
                sender.send_parts(parts)

    def answers(self, count: int, timeout_s: float = 60) -> dict[str, dict]:
        """The first ``count`` answers (decisions and refusals) by frame id, once that many arrived."""
        messages = self.collector.wait_for_count(count, timeout_s)
        assert len(messages) >= count, f"only {len(messages)} of {count} answers"
        return {m.get("frame_id"): m for m in messages}

    def quiet(self, timeout_s: float = 30) -> dict[str, int]:
        """Wait until everything queued for the store is written; returns the line's counts."""
        assert self.daemon.records.settled(timeout_s), "the recorder did not catch up"
        return dict(self.store.counts(LINE))

    def stop(self) -> None:
        """Shut the line down through its control socket (again: nothing happens)."""
        if self._thread.is_alive():
            self.daemon.stopping.set()
            self._thread.join(60)
        if not self.collector.closed:
            self.collector.close()
        assert not self._thread.is_alive(), "the daemon did not stop"
