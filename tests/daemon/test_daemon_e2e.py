"""The real daemon process end to end: every frame answered and recorded, bad input refused, clean restarts."""

from __future__ import annotations

import io
import json
import shutil
import signal
import time

import numpy as np
import pytest
from PIL import Image

from daemon.review.queue import mark
from daemon.store import Store
from musc_online.client import AnswerCollector, FrameSender
from musc_online.protocol import FrameHeader, encode_frame
from musc_online.synthetic import synthetic_product

from .conftest import LINE, DaemonProcess


def _corrupt_messages(rng: np.random.Generator) -> list[tuple[str, list[bytes]]]:
    """Ten broken frames of four kinds (and one for another line), each with the refusal code it must get."""
    good = synthetic_product(rng, 96)
    jpeg = encode_frame(good, line=LINE, camera="cam-x", frame_id="trunc-0", encoding="jpeg")
    raw_header = FrameHeader(
        line=LINE,
        camera="cam-x",
        frame_id="shape-0",
        timestamp=time.time(),
        encoding="raw",
        shape=(64, 64, 3),
        dtype="uint8",
    ).to_bytes()
    big = io.BytesIO()
    Image.fromarray(np.zeros((1000, 1100, 3), np.uint8)).save(big, format="PNG")
    big_header = encode_frame(good, line=LINE, camera="cam-x", frame_id="big-0", encoding="png")[0]
    return [
        ("bad_json", [b"{not json", b"payload"]),
        ("missing_field", [json.dumps({"schema": 1, "line": LINE}).encode(), b"x"]),
        ("bad_payload", [jpeg[0], jpeg[1][: len(jpeg[1]) // 2]]),
        ("bad_payload", [jpeg[0].replace(b"trunc-0", b"trunc-1"), jpeg[1][:200]]),
        ("bad_payload", [jpeg[0].replace(b"trunc-0", b"trunc-2"), b"\xff\xd8\xff" + b"\x00" * 50]),
        ("bad_payload", [raw_header, np.zeros((64, 64), np.uint8).tobytes()]),
        ("bad_payload", [raw_header.replace(b"shape-0", b"shape-1"), np.zeros((64, 60, 3), np.uint8).tobytes()]),
        ("too_large", [big_header, big.getvalue()]),
        ("too_large", [big_header.replace(b"big-0", b"big-1"), big.getvalue()]),
        ("wrong_line", encode_frame(good, line=LINE + 1, camera="cam-x", frame_id="other-line", encoding="png")),
    ]


@pytest.mark.slow
def test_every_frame_is_answered_recorded_and_survives_a_restart(tmp_path):
    daemon = DaemonProcess(tmp_path / "lines").start()
    collector = AnswerCollector(daemon.settings, LINE)
    rng = np.random.default_rng(0)
    corrupt = _corrupt_messages(rng)
    positions = set(rng.choice(300, size=len(corrupt), replace=False).tolist())
    expected_codes = []
    with FrameSender(daemon.settings, line=LINE) as sender:
        broken = iter(corrupt)
        for i in range(300):
            if i in positions:
                code, parts = next(broken)
                expected_codes.append(code)
                sender.send_parts(parts)
            else:
                image = synthetic_product(rng, 160, defective=rng.random() < 0.1)
                sender.send(image, camera="cam-1", frame_id=f"f{i:04d}", encoding="jpeg")
    messages = collector.wait_for_count(300, 180)
    collector.close()
    assert len(messages) == 300, f"only {len(messages)} answers:\n{daemon.log.read_text()[-3000:]}"
    refusals = [m for m in messages if m["topic"].endswith("refusal")]
    decisions = [m for m in messages if m["topic"].endswith("decision")]
    assert sorted(m["code"] for m in refusals) == sorted(expected_codes)
    assert all(m["reason"] for m in refusals)
    assert len({m["frame_id"] for m in decisions}) == 290
    assert {m["label"] for m in decisions} <= {"ok", "unsure", "defect"}
    assert all(len(m["heatmap"]["values"]) == np.prod(m["heatmap"]["grid"]) for m in decisions)

    status = daemon.call("status")["result"]
    counts = status["counts"]
    assert (counts["received"], counts["decided"], counts["refused"], counts["pending"]) == (300, 290, 10, 0)
    window = status["scorer"]["window"]
    band = status["scorer"]["band"]

    assert daemon.stop(signal.SIGTERM) == 0
    assert "stopped cleanly" in daemon.log.read_text()
    with Store.open(f"sqlite:///{daemon.data_dir / f'line-{LINE}' / 'store.db'}") as store:
        assert store.counts(LINE)["received"] == 300
        assert store.counts(LINE)["pending"] == 0

    daemon.start()
    again = daemon.call("status")["result"]
    assert again["recovered"]["window"] == window
    assert again["scorer"]["band"] == band
    assert again["counts"]["received"] == 300
    assert daemon.stop(signal.SIGINT) == 0


@pytest.mark.slow
def test_kill_minus_nine_with_frames_in_flight_and_corrections_after_the_last_snapshot(tmp_path):
    daemon = DaemonProcess(tmp_path / "lines").start()
    collector = AnswerCollector(daemon.settings, LINE)
    rng = np.random.default_rng(1)
    with FrameSender(daemon.settings, line=LINE) as sender:
        for i in range(20):
            sender.send(synthetic_product(rng, 160), camera="cam-1", frame_id=f"k{i}", encoding="png")
    assert len(collector.wait_for_count(20, 180)) == 20
    collector.close()
    line_dir = daemon.data_dir / f"line-{LINE}"
    daemon.call("snapshot")
    shutil.copytree(line_dir / "state", tmp_path / "older-state")

    with Store.open(f"sqlite:///{line_dir / 'store.db'}") as store:
        assert mark(store, daemon.settings, LINE, "k2", "ok", "ann")["applied"]
        assert mark(store, daemon.settings, LINE, "k3", "defect", "ann", label="spot")["applied"]
        taught = daemon.call("status")["result"]["scorer"]
        assert (taught["judges"], taught["known_defects"]) == (1, 1)

        with FrameSender(daemon.settings, line=LINE) as sender:
            for i in range(150):
                sender.send(synthetic_product(rng, 160), camera="cam-1", frame_id=f"m{i}", encoding="png")
        deadline = time.monotonic() + 60
        while store.counts(LINE)["pending"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.counts(LINE)["pending"] >= 5, "no frame was in flight"
        daemon.stop(signal.SIGKILL)
    # The crash came before any snapshot that followed the corrections: the line restarts from the older state.
    shutil.rmtree(line_dir / "state")
    shutil.copytree(tmp_path / "older-state", line_dir / "state")

    daemon.start()
    status = daemon.call("status")["result"]
    recovered = status["recovered"]
    assert recovered["refused_after_crash"] > 0
    assert (recovered["corrections_applied"], recovered["corrections_failed"]) == (2, 0)
    assert (status["scorer"]["judges"], status["scorer"]["known_defects"]) == (1, 1)
    counts = status["counts"]
    assert counts["received"] == counts["decided"] + counts["refused"] and counts["pending"] == 0
    assert counts["refused_by_code"]["interrupted"] == recovered["refused_after_crash"]
    assert daemon.stop() == 0


@pytest.mark.slow
def test_fuzzed_messages_are_each_answered_and_the_daemon_stays_up(tmp_path):
    daemon = DaemonProcess(tmp_path / "lines").start()
    collector = AnswerCollector(daemon.settings, LINE)
    rng = np.random.default_rng(2)
    valid = encode_frame(synthetic_product(rng, 64), line=LINE, camera="cam-f", frame_id="seed", encoding="png")
    count = 1000
    with FrameSender(daemon.settings, line=LINE) as sender:
        for i in range(count):
            header = bytearray(valid[0])
            payload = bytearray(valid[1])
            kind = i % 5
            if kind == 0:  # random bytes for a header
                header = bytearray(rng.integers(0, 256, rng.integers(1, 200), dtype=np.uint8).tobytes())
            elif kind == 1:  # flipped bytes inside the JSON
                for position in rng.integers(0, len(header), 3):
                    header[position] = int(rng.integers(32, 127))
            elif kind == 2:  # a valid header with a garbled payload
                header = bytearray(valid[0].replace(b'"seed"', f'"fz{i}"'.encode()))
                payload = bytearray(rng.integers(0, 256, rng.integers(1, 400), dtype=np.uint8).tobytes())
            elif kind == 3:  # wrong number of parts
                sender.send_parts([bytes(header)] * int(rng.choice([1, 3])))
                continue
            else:  # wrong types in valid JSON
                fields = json.loads(valid[0])
                fields[str(rng.choice(list(fields)))] = [None, -1, "", 1e309, {"a": 1}][(i // 5) % 5]
                header = bytearray(json.dumps(fields).encode())
            sender.send_parts([bytes(header), bytes(payload)])
    messages = collector.wait_for_count(count, 120)
    collector.close()
    assert len(messages) == count
    status = daemon.call("status")["result"]
    assert status["counts"]["received"] == count
    assert status["counts"]["received"] == status["counts"]["decided"] + status["counts"]["refused"]
    assert daemon.stop() == 0
