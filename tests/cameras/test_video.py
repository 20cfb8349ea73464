"""``video:`` and live streams through PyAV: a file encoded from real MVTec AD images is read back frame by frame,
in order and faithful; read as a live stream it hands over only its newest frame and counts the rest skipped."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from musc_online.cameras import CameraRunner, CameraSettings, open_source
from musc_online.cameras.video import VideoSource
from musc_online.datasets import images_in, load_image

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'musc-online[line]')")
SIDE, FRAMES = 128, 10


@pytest.fixture(scope="module")
def real_frames(mvtec_root: Path) -> list[np.ndarray]:
    """Ten real bottle images, made small (the PIL resize keeps this test fast)."""
    from PIL import Image

    paths = images_in(mvtec_root / "bottle" / "train" / "good")[:FRAMES]
    return [np.asarray(Image.fromarray(load_image(p)).resize((SIDE, SIDE))) for p in paths]


@pytest.fixture(scope="module")
def video_file(real_frames, tmp_path_factory) -> Path:
    """The images encoded by PyAV as an MPEG-4 file at high quality."""
    path = tmp_path_factory.mktemp("video") / "bottles.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5, options={"qscale": "2"})
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        for image in real_frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_video_file_is_read_frame_by_frame_in_order(video_file, real_frames):
    runner = CameraRunner(open_source(CameraSettings(source=f"video:{video_file}", frame_rate=0)))
    grabs = []
    while (grab := runner.next_grab()) is not None:
        grabs.append(grab.image)
    assert runner.source.camera_id == "bottles"
    assert len(grabs) == FRAMES and runner.counts.errors == 0 and runner.counts.skipped == 0
    for index, image in enumerate(grabs):
        distances = [np.abs(image.astype(int) - original.astype(int)).mean() for original in real_frames]
        assert int(np.argmin(distances)) == index  # in order, each closest to its own original
        assert distances[index] < 6  # and faithful after the lossy codec


def test_a_live_stream_hands_over_only_its_newest_frame(video_file, real_frames):
    source = VideoSource(f"video:{video_file}", str(video_file), live=True)
    source.open()
    deadline = time.monotonic() + 30
    while source.skipped < FRAMES - 1:  # a slow line: the decoder runs through the stream before anyone grabs
        assert time.monotonic() < deadline, f"decoder stuck at {source.skipped} frames skipped"
        time.sleep(0.01)
    newest = source.grab(1.0)
    assert newest is not None and source.skipped == FRAMES - 1
    distances = [np.abs(newest.image.astype(int) - original.astype(int)).mean() for original in real_frames]
    assert int(np.argmin(distances)) == FRAMES - 1
    with pytest.raises(StopIteration):
        source.grab(1.0)
    source.close()


def test_a_file_that_is_not_a_video_is_a_camera_error(tmp_path):
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"hello")
    runner = CameraRunner(
        open_source(CameraSettings(source=f"video:{bad}", reopen_min_s=0.001, reopen_max_s=0.001)),
        reopen_min_s=0.001,
        reopen_max_s=0.001,
    )
    threading.Timer(0.2, runner.stop).start()
    assert runner.next_grab() is None
    assert runner.counts.errors >= 1 and "cannot open" in runner.counts.last_error
