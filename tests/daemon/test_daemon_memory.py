"""A burst of real 12 MP JPEG frames to a real daemon process: its memory grows no more than the bound its settings
state (``status``' memory_bounds), because frames are kept at the model's input and every queue of frames is bounded
in bytes."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.client import AnswerCollector, FrameSender
from musc_online.protocol import FrameHeader
from musc_online.transport import line_ports

from .conftest import LINE, DaemonProcess, wait_until
from .large_frames import HEIGHT, WIDTH, large_jpegs

MIB = 1 << 20
BURST = 24
KEPT = 3 * 64 * 64 + 3 * 512 * 384  # bytes of a queued 4000 x 3000 frame: the 64 px input and a 512 x 384 picture
SETTINGS = {  # a tiny random backbone, so that what grows is frames, not the model
    "MUSC_MODEL__BACKBONE": "test_random_vit",
    "MUSC_MODEL__IMAGE_SIZE": "64",
    "MUSC_MODEL__DEVICE": "cpu",
    "MUSC_ONLINE__WINDOW": "8",
    "MUSC_ONLINE__HISTORY": "8",
    "MUSC_ONLINE__JUDGES_PER_FRAME": "2",
    "MUSC_ONLINE__CALIBRATION_SCORES": "8",
    "MUSC_PIPELINE__MAX_IMAGE_PIXELS": str(WIDTH * HEIGHT),
    "MUSC_TRANSPORT__MAX_MESSAGE_BYTES": str(4 * MIB),
    "MUSC_PIPELINE__RECEIVE_BYTES": str(16 * MIB),  # 4 messages per camera
    "MUSC_PIPELINE__QUEUE_BYTES": str(4 * MIB),  # about 7 frames kept at 64 px with a 512 px picture
    "MUSC_PIPELINE__PICTURES_BYTES": str(8 * MIB),
    "MUSC_PIPELINE__PICTURE_SIDE": "512",
}


def _memory(pid: int, key: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident since the last reset) of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@pytest.mark.slow
def test_a_burst_of_12_mp_frames_grows_the_daemon_by_no_more_than_its_stated_bound(tmp_path, monkeypatch):
    payloads = large_jpegs(4)
    assert max(len(p) for p in payloads) < 4 * MIB
    daemon = DaemonProcess(tmp_path / "lines", SETTINGS).start()
    pid = daemon.process.pid
    collector = AnswerCollector(daemon.settings, LINE)

    def message(frame_id: str, i: int) -> list[bytes]:
        header = FrameHeader(line=LINE, camera="cam-1", frame_id=frame_id, timestamp=time.time(), encoding="jpeg")
        return [header.to_bytes(), payloads[i % len(payloads)]]

    baseline = _memory(pid, "VmRSS")  # ready, before any frame: the first frames' one-off costs count too
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    with FrameSender(daemon.settings, line=LINE) as sender:
        daemon.call("pause")  # the burst piles up: the scoring queue fills to its bound, the rest waits upstream
        for i in range(BURST):
            sender.send_parts(message(f"big{i}", i))

        def queue_full() -> bool:
            scoring = daemon.call("status")["result"]["queues"]["scoring"]
            return scoring["bytes"] > scoring["max_bytes"] - KEPT  # no room for one more

        wait_until(queue_full, "the scoring queue to fill")
        held = daemon.call("status")["result"]
        daemon.call("resume")
        answers = collector.wait_for_count(BURST, 120)
        assert len(answers) == BURST
        wait_until(lambda: daemon.call("status")["result"]["queues"]["pictures"]["depth"] == 0, "the pictures")
    peak = _memory(pid, "VmHWM") - baseline

    scoring = held["queues"]["scoring"]  # bounded in bytes, not in frames (64 frames would fit)
    assert scoring["depth"] == scoring["bytes"] // KEPT < BURST and scoring["bytes"] <= 4 * MIB
    bounds = held["memory_bounds"]
    assert bounds["scoring_queue"] == 4 * MIB and bounds["pictures_queue"] == 8 * MIB
    assert bounds["receive_per_camera"] == 16 * MIB
    print(f"peak growth {peak / MIB:.0f} MiB over {baseline / MIB:.0f} MiB; bound {bounds['total'] / MIB:.0f} MiB")
    assert peak <= bounds["total"], f"grew {peak / MIB:.0f} MiB, over the stated {bounds['total'] / MIB:.0f} MiB"
    assert sum(1 for a in answers if a["topic"].endswith("decision")) == BURST  # none refused, none lost

    for key, value in daemon.env.items():
        if key.startswith("MUSC_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line per row
    shown = CliRunner().invoke(app, ["status", "--line", str(LINE)]).stdout
    assert "memory bounds" in shown and f"all frames at most {round(bounds['total'] / MIB)} MiB" in shown, shown
    status = json.loads(CliRunner().invoke(app, ["status", "--line", str(LINE), "--json"]).stdout)
    assert status["memory_bounds"] == bounds
    with urllib.request.urlopen(f"http://127.0.0.1:{line_ports(LINE, daemon.base_port)[3]}/metrics") as reply:
        metrics = {
            (sample.name, sample.labels.get("queue") or sample.labels.get("part")): sample.value
            for family in text_string_to_metric_families(reply.read().decode())
            for sample in family.samples
        }
    assert metrics["musc_queue_capacity_bytes", "scoring"] == 4 * MIB
    assert metrics["musc_queue_capacity_bytes", "pictures"] == 8 * MIB
    assert metrics["musc_frame_memory_bound_bytes", "total"] == bounds["total"]
    collector.close()
    assert daemon.stop() == 0
