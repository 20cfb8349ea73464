"""One line, one daemon: a second ``musc-daemon start`` of a line refuses at once, before it touches the store,
while the first keeps answering and loses none of its pending frames to the second's crash recovery."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from daemon.store import FolderLock, LineBusyError, Store
from musc_online.client import AnswerCollector, FrameSender
from musc_online.synthetic import synthetic_product

from .conftest import LINE, DaemonProcess

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 6


def _wait(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_daemon_of_a_line_refuses_at_once_and_the_first_loses_no_pending_frame(tmp_path, store_url):
    postgres = store_url.startswith("postgresql")
    shared = {"MUSC_STORE__URL": store_url} if postgres else {}
    first = DaemonProcess(tmp_path / "lines", shared).start()
    first.call("pause")  # frames wait in the line's queue, pending in the store, while the second one starts
    collector = AnswerCollector(first.settings, LINE)
    rng = np.random.default_rng(0)
    with FrameSender(first.settings, line=LINE) as camera:
        for i in range(FRAMES):
            camera.send(synthetic_product(rng, 96), camera="cam-1", frame_id=f"f{i}", encoding="png")
    _wait(lambda: first.call("status")["result"]["counts"]["pending"] == FRAMES, "the frames were not received")

    # On SQLite the same data folder on the same host; on PostgreSQL another host's daemon (its own folder and
    # ports) pointed at the same store.
    second = DaemonProcess(tmp_path / ("elsewhere" if postgres else "lines"), shared)
    if not postgres:
        second.env["MUSC_TRANSPORT__BASE_PORT"] = first.env["MUSC_TRANSPORT__BASE_PORT"]
    command = [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(LINE), "--no-log-json"]
    refused = subprocess.run(command, env=second.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr  # worth another try, once the first one has stopped
    assert f"cannot start line {LINE}: line {LINE} is already served by another daemon" in refused.stderr
    if postgres:
        assert f"musc-daemon line {LINE} pid {first.process.pid} on" in refused.stderr
        assert "pg_terminate_backend" in refused.stderr
    else:
        assert f"(pid {first.process.pid})" in refused.stderr and "daemon.lock" in refused.stderr

    assert first.call("resume")["result"] == {"paused": False}
    assert collector.wait_for([f"f{i}" for i in range(FRAMES)], stall_s=60) == []
    collector.close()
    assert {m["topic"] for m in collector.messages} == {f"line.{LINE}.decision"}
    counts = first.call("status")["result"]["counts"]
    assert counts["decided"] == FRAMES and counts["refused"] == 0 and "interrupted" not in counts["refused_by_code"]
    assert first.stop() == 0
    url = store_url if postgres else f"sqlite:///{tmp_path / 'lines' / f'line-{LINE}' / 'store.db'}"
    with Store.open(url) as store:
        assert store.counts(LINE)["refused"] == 0


def test_the_folder_lock_names_its_holder_and_is_free_again_once_released(tmp_path):
    held = FolderLock.take(tmp_path / "line-3", 3)
    assert (tmp_path / "line-3" / "daemon.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(LineBusyError, match=rf"line 3 is already served by another daemon \(pid {os.getpid()}\)"):
        FolderLock.take(tmp_path / "line-3", 3)
    held.release()
    FolderLock.take(tmp_path / "line-3", 3).release()


def test_the_stores_line_lock_refuses_a_second_holder_on_postgresql(store_url):
    with Store.open(store_url) as store, Store.open(store_url) as other:
        lock = store.hold_line(LINE, "musc-daemon line 3 pid 1 on test")
        if lock is None:
            assert not store_url.startswith("postgresql")  # SQLite lives in the line's folder: FolderLock guards it
            return
        with pytest.raises(LineBusyError, match="musc-daemon line 3 pid 1 on test from"):
            other.hold_line(LINE, "second")
        other.hold_line(LINE + 1, "line 4").release()  # other lines are free
        lock.release()
        other.hold_line(LINE, "second").release()
