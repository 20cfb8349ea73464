"""With the real daemon: operators correct a drift and a missed defect, the line learns, a restart keeps it."""

import signal

import numpy as np
import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.client import AnswerCollector, FrameSender
from musc_online.synthetic import brighten, synthetic_product

from .conftest import LINE, DaemonProcess

runner = CliRunner()


def _send(daemon, collector, frames: dict[str, np.ndarray]) -> dict[str, dict]:
    """Send frames and return their decisions by frame id, once all have come back."""
    expected = len(collector.messages) + len(frames)
    with FrameSender(daemon.settings, line=LINE) as sender:
        for frame_id, image in frames.items():
            sender.send(image, camera="cam-1", frame_id=frame_id, encoding="png")
    messages = collector.wait_for_count(expected, 120)
    return {m["frame_id"]: m for m in messages if m["frame_id"] in frames}


@pytest.mark.slow
def test_corrections_teach_the_running_line_and_survive_a_restart(tmp_path, monkeypatch):
    daemon = DaemonProcess(tmp_path / "lines").start()
    for key, value in daemon.env.items():
        if key.startswith("MUSC_"):
            monkeypatch.setenv(key, value)
    collector = AnswerCollector(daemon.settings, LINE)
    rng = np.random.default_rng(0)

    def mark(frame_id: str, verdict: str, *extra: str) -> None:
        result = runner.invoke(app, ["review", "mark", frame_id, verdict, "--line", str(LINE), *extra])
        assert result.exit_code == 0, result.output

    _send(daemon, collector, {f"a{i}": synthetic_product(rng, 160) for i in range(24)})
    drifted = lambda: brighten(synthetic_product(rng, 160), 1.3, 25)  # noqa: E731 - the light changed
    before = _send(daemon, collector, {f"b{i}": drifted() for i in range(6)})
    alarms = [f"b{i}" for i in range(6) if before[f"b{i}"]["label"] != "ok"]
    assert len(alarms) >= 4, before
    for frame_id in alarms[:3]:
        mark(frame_id, "ok", "--note", "new lamp")
    assert daemon.call("status")["result"]["scorer"]["judges"] == 3

    after = _send(daemon, collector, {f"c{i}": drifted() for i in range(12)})
    alarms_after = sum(m["label"] != "ok" for m in after.values())
    assert alarms_after / 12 < len(alarms) / 6
    assert np.mean([m["score"] for m in after.values()]) < np.mean([m["score"] for m in before.values()])

    spot = brighten(synthetic_product(rng, 160, defective=True), 1.3, 25)
    first = _send(daemon, collector, {"d0": spot})["d0"]
    mark("d0", "defect", "--label", "spot")
    status = daemon.call("status")["result"]
    assert status["scorer"]["known_defects"] == 1
    if first["label"] == "ok":  # it had been admitted as a voter: confirming the defect must evict it
        assert status["scorer"]["window"] < 16
    again = _send(daemon, collector, {"d1": spot})["d1"]
    assert again["nearest_defect"]["label"] == "spot"
    collector.close()

    band = status["scorer"]["band"]
    assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()
    restored = daemon.call("status")["result"]
    assert restored["scorer"]["judges"] == 3
    assert restored["scorer"]["known_defects"] == 1
    assert restored["scorer"]["band"] == band
    assert restored["counts"]["corrections_pending"] == 0
    assert daemon.stop() == 0
