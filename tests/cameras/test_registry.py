"""Camera URIs: each scheme opens its source, and a URI no source takes is refused saying what is expected."""

from __future__ import annotations

import importlib.util

import pytest

from musc_online.cameras import CameraRunner, CameraSettings, CameraUnavailable, open_source


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://camera", "unknown camera source 'ftp://camera'; expected one of: genicam://ID"),
        ("folder:", "folder: needs a path"),
        ("video:", "names no a file"),
        ("v4l2:", "names no a device"),
    ],
)
def test_a_bad_uri_is_refused_with_what_is_expected(uri, message):
    with pytest.raises(CameraUnavailable, match=message):
        open_source(CameraSettings(source=uri))


def test_a_stream_cannot_be_software_triggered():
    with pytest.raises(CameraUnavailable, match="cannot be software-triggered"):
        open_source(CameraSettings(source="rtsp://10.0.0.9/stream", trigger="software"))


@pytest.mark.skipif(importlib.util.find_spec("pypylon") is not None, reason="pypylon is installed here")
def test_basler_without_pypylon_says_what_to_install():
    source = open_source(CameraSettings(source="basler://21234567"))
    with pytest.raises(CameraUnavailable, match=r"pip install .musc-online\[basler\]."):
        CameraRunner(source).next_grab()


def test_synthetic_and_folder_sources_are_todays_publish_sources(tmp_path):
    runner = CameraRunner(open_source(CameraSettings(source="synthetic", frame_rate=0)))
    grab = runner.next_grab()
    assert grab is not None and grab.image.shape == (320, 320, 3)
    empty = open_source(CameraSettings(source=f"folder:{tmp_path}", frame_rate=0))
    with pytest.raises(Exception, match="no images"):
        empty.open()


def test_a_triggered_stills_source_captures_once_per_trigger():
    source = open_source(CameraSettings(source="synthetic", trigger="software"))
    source.open()
    assert source.grab(0.01) is None
    source.trigger()
    assert source.grab(0.01) is not None
    assert source.grab(0.01) is None
