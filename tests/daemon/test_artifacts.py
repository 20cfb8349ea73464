"""Artifact PNGs: which decisions are kept, where and under what name, the colour scale, and pruning limits."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon.artifacts import MAX_NAME, ArtifactWriter, heat_scale, safe_name
from musc_online.online.decision import Decision
from musc_online.online.thresholds import UNSET, ThresholdBand

BAND = ThresholdBand(1.0, 2.0, "calibrated")
DAY = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
IMAGE = np.full((24, 32, 3), 128, np.uint8)


def decision(frame_id: str = "frame-1", label: str = "defect", band: ThresholdBand = BAND) -> Decision:
    """A real scorer decision on a 4 x 4 patch grid whose scores run from 0 to 3."""
    return Decision(
        frame_id=frame_id,
        score=2.5,
        raw_score=3.0,
        label=label,
        band=band,
        provisional=False,
        patch_scores=np.linspace(0.0, 3.0, 16, dtype=np.float32).reshape(4, 4),
        image_size=IMAGE.shape[:2],
        references={"voters": 8, "judges": 4},
        nearest_defect=None,
        admitted=False,
        timings_ms={},
    )


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def test_defect_and_unsure_are_saved_side_by_side_in_day_and_label_folders(tmp_path: Path) -> None:
    writer = ArtifactWriter(tmp_path / "artifacts")
    defect = writer.save(decision("a", "defect"), IMAGE, when=DAY)
    unsure = writer.save(decision("b", "unsure"), IMAGE, when=DAY)
    assert defect == tmp_path / "artifacts" / "2024-05-17" / "defect" / "a.png"
    assert unsure == tmp_path / "artifacts" / "2024-05-17" / "unsure" / "b.png"
    picture = np.asarray(Image.open(defect))
    assert picture.shape == (24, 64, 3)
    assert (picture[:, :32] == IMAGE).all()  # the frame as received, then its overlay
    assert not (picture[:, 32:] == IMAGE).all()


def test_ok_frames_are_sampled_one_in_n(tmp_path: Path) -> None:
    writer = ArtifactWriter(tmp_path, keep_ok_every=3)
    assert [writer.keeps("ok") for _ in range(7)] == [True, False, False, True, False, False, True]
    assert writer.keeps("unsure") and writer.keeps("defect")

    never = ArtifactWriter(tmp_path / "never", keep_ok_every=0)
    assert not any(never.keeps("ok") for _ in range(5))
    assert never.keeps("defect")


def test_the_frame_is_read_back_from_its_picture_pixel_for_pixel(tmp_path: Path) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = ArtifactWriter(tmp_path).save(decision("f", "defect"), frame, when=DAY)
    np.testing.assert_array_equal(ArtifactWriter.frame_from(path), frame)


def test_frame_ids_are_sanitised_capped_and_kept_unique(tmp_path: Path) -> None:
    writer = ArtifactWriter(tmp_path)
    hostile = writer.save(decision("../../etc/pass wd\x00é"), IMAGE, when=DAY)
    assert hostile == tmp_path / "2024-05-17" / "defect" / ".._.._etc_pass_wd__.png"
    long = writer.save(decision("x" * 500), IMAGE, when=DAY)
    assert long.name == "x" * MAX_NAME + ".png"
    first = writer.save(decision("cam/1"), IMAGE, when=DAY)
    clash = writer.save(decision("cam_1"), IMAGE, when=DAY)
    again = writer.save(decision("cam_1"), IMAGE, when=DAY)
    assert [first.name, clash.name, again.name] == ["cam_1.png", "cam_1-1.png", "cam_1-2.png"]
    assert all(path.parent == tmp_path / "2024-05-17" / "defect" for path in pngs(tmp_path))
    assert safe_name("") == "frame" and safe_name("a.b-c_D9") == "a.b-c_D9"


def test_colour_scale_is_fixed_by_the_band_and_falls_back_to_min_max() -> None:
    amap = np.array([[0.0, 1.0], [1.5, 2.0]])
    assert heat_scale(amap, decision()) == pytest.approx(np.array([[0.0, 0.5], [0.75, 1.0]]))
    assert heat_scale(amap * 2, decision()).max() == 1.0  # clipped above the band's top
    assert heat_scale(amap, decision(band=UNSET)) == pytest.approx(amap / 2.0)
    flat = heat_scale(amap, decision(band=ThresholdBand(1.0, 1.0, "operator")))
    assert flat == pytest.approx(amap / 2.0)


def test_image_that_is_not_rgb_uint8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        ArtifactWriter(tmp_path).save(decision(), IMAGE[..., 0])
    with pytest.raises(ValueError, match="keep_ok_every"):
        ArtifactWriter(tmp_path, keep_ok_every=-1)


def age(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


def test_prune_removes_old_files_and_their_empty_day_folders(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    writer = ArtifactWriter(tmp_path, max_age_days=30)
    old_day = datetime(2024, 1, 1, tzinfo=UTC)
    old = [writer.save(decision(f"old-{i}", label), IMAGE, when=old_day) for i, label in enumerate(("defect", "ok"))]
    fresh = writer.save(decision("fresh"), IMAGE, when=DAY)
    for path in old:
        age(path, now - 31 * 86400)
    age(fresh, now - 29 * 86400)

    assert writer.prune(now=now) == 2
    assert pngs(tmp_path) == [fresh]
    assert not (tmp_path / "2024-01-01").exists()
    assert writer.prune(now=now) == 0


def test_the_folder_never_holds_more_than_max_files(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    writer = ArtifactWriter(tmp_path, max_files=3)
    paths = []
    for i in range(5):
        paths.append(writer.save(decision(f"f{i}", "unsure"), IMAGE, when=DAY))
        age(paths[-1], now - 100 + i)
        assert len(pngs(tmp_path)) == min(i + 1, 3)  # room is made before a picture is written, never after
    assert pngs(tmp_path) == sorted(paths[2:])
    assert writer.prune(now=now, keep=1) == 2
    assert pngs(tmp_path) == [paths[4]]


def test_prune_touches_nothing_outside_its_layout(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    folder = tmp_path / "artifacts"
    outside = tmp_path / "elsewhere" / "defect"
    outside.mkdir(parents=True)
    strangers = [outside / "keep.png", folder / "root.png", folder / "notes" / "defect" / "keep.png"]
    for path in strangers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
        age(path, 0.0)
    (folder / "2020-01-01").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    writer = ArtifactWriter(folder, max_files=1, max_age_days=1)
    ours = writer.save(decision(), IMAGE, when=DAY)
    age(ours, 0.0)

    assert writer.prune(now=now) == 1
    assert not ours.exists()
    assert all(path.read_bytes() == b"not ours" for path in strangers)
    assert (folder / "2020-01-01").is_symlink()
    assert ArtifactWriter(tmp_path / "missing").prune() == 0
