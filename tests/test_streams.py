"""Seeded stress streams: layouts, warm-up, drifts, changeover, reproducibility and masks, on tiny made-up trees.

Two small MVTec-layout trees are drawn with Pillow in a temporary folder: a textured one with a colour tint
(so the changeover's channel swap shows) and a flat one with a dark disc at the centre (so lighting and
position drifts can be measured). One test builds streams from the real bottle images when they are there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from musc_online.augment import MAX_SHIFT, position_shift
from musc_online.datasets import load_image, load_mask
from musc_online.streams import STREAMS, Stream, build_stream

from .made_pictures import flat_disc, textured

CATEGORY = "widget"
SIZE = 48
FLAT_SIZE = 64


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _textured(rng: np.random.Generator) -> np.ndarray:
    return textured(rng, SIZE)


def _make_tree(
    root: Path, good: Callable[[np.random.Generator], np.ndarray], defect_size: int, size: int, seed: int
) -> Path:
    """6 train/good, 6 test/good, defect types crack (4 images) and spot (3) with masks, under root/widget."""
    rng = np.random.default_rng(seed)
    folder = root / CATEGORY
    for split in ("train", "test"):
        for i in range(6):
            _save(folder / split / "good" / f"{i:03d}.png", good(rng))
    for defect_type, count in (("crack", 4), ("spot", 3)):
        for i in range(count):
            image = good(rng)
            y, x = rng.integers(size // 6, size - size // 6 - defect_size, 2)
            mask = np.zeros((size, size), np.uint8)
            mask[y : y + defect_size, x : x + defect_size] = 255
            image[mask > 0] = (15, 10, 5)
            _save(folder / "test" / defect_type / f"{i:03d}.png", image)
            _save(folder / "ground_truth" / defect_type / f"{i:03d}_mask.png", mask)
    return root


def _flat(rng: np.random.Generator | None = None) -> np.ndarray:
    return flat_disc(FLAT_SIZE)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_tree(tmp_path_factory.mktemp("textured"), _textured, 8, SIZE, seed=0)


@pytest.fixture(scope="module")
def flat_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_tree(tmp_path_factory.mktemp("flat"), _flat, 8, FLAT_SIZE, seed=1)


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(str(image.shape).encode() + image.tobytes()).hexdigest()


def _source(frame_id: str) -> str:
    """The source image's stem in a frame id such as f00120-crack-002-aug."""
    return frame_id.split("-")[-2]


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """(start, length) of every run of 1s."""
    runs, start = [], None
    for index, label in enumerate([*labels, 0]):
        if label and start is None:
            start = index
        elif not label and start is not None:
            runs.append((start, index - start))
            start = None
    return runs


def _dark_centroid_x(image: np.ndarray) -> float:
    return float(np.argwhere(image.mean(axis=-1) < 90)[:, 1].mean())


def _window_means(values: list[float], windows: int = 4) -> list[float]:
    return [float(np.mean(part)) for part in np.array_split(np.asarray(values), windows)]


# --- streams ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_stream_builds_with_its_length_and_a_good_warmup(tiny_root, name):
    stream = build_stream(name, tiny_root, CATEGORY, length=120, warmup=24, seed=1)
    assert isinstance(stream, Stream) and stream.name == name and stream.description.endswith(".")
    assert len(stream.frames) == 120 and stream.warmup == 24
    assert all(frame.label == 0 for frame in stream.frames[:24])
    assert any(frame.label == 1 for frame in stream.frames)
    assert len({frame.frame_id for frame in stream.frames}) == 120
    for index, frame in enumerate(stream.frames):
        assert frame.frame_id.startswith(f"f{index:05d}-") and frame.frame_id.endswith("-aug") and frame.augmentation
        assert (frame.defect_type == "good") == (frame.label == 0)
        assert f"-{frame.defect_type}-" in frame.frame_id
    assert [judge_id for judge_id, _ in stream.judges] == [f"train_good_{i:03d}" for i in range(6)]
    # A line never sees its seed parts again: good frames come from test/good, never from a judge's own image.
    judge_images = {load.path for _, load in stream.judges}
    good_images = {frame.load.path for frame in stream.frames if frame.label == 0}
    assert good_images == set((tiny_root / CATEGORY / "test" / "good").glob("*.png")) and not good_images & judge_images
    assert bool(stream.changeover_judges) == (name == "changeover")
    image, mask = stream.frames[-1].load(), stream.frames[-1].mask(32)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert mask.shape == (32, 32) and mask.dtype == bool


def test_rate_streams_hit_their_defect_share(tiny_root):
    rate10 = build_stream("rate10", tiny_root, CATEGORY, length=400, warmup=64, seed=0)
    labels = [frame.label for frame in rate10.frames[64:]]
    assert sum(labels) / len(labels) == pytest.approx(0.10, abs=0.01)
    assert {frame.defect_type for frame in rate10.frames} == {"good", "crack", "spot"}
    assert len(_runs(labels)) > sum(labels) // 2  # spread out, not one block
    rate2 = build_stream("rate2", tiny_root, CATEGORY, length=400, warmup=64, seed=0)
    assert sum(frame.label for frame in rate2.frames) == round(0.02 * 336) == 7
    assert sum(frame.label for frame in build_stream("rate2", tiny_root, CATEGORY, 100, 50).frames) == 1


def test_bad_batch_is_one_run_of_every_image_of_the_largest_type(tiny_root):
    stream = build_stream("bad_batch", tiny_root, CATEGORY, length=60, warmup=20, seed=2)
    labels = [frame.label for frame in stream.frames]
    ((start, length),) = _runs(labels)
    assert length == 4 and start >= 20 and start + length < 60
    batch = stream.frames[start : start + length]
    assert {frame.defect_type for frame in batch} == {"crack"}
    assert sorted(_source(frame.frame_id) for frame in batch) == ["000", "001", "002", "003"]
    with pytest.raises(ValueError, match="bad_batch needs"):
        build_stream("bad_batch", tiny_root, CATEGORY, length=24, warmup=20)


def test_recurring_is_one_type_in_40_percent_in_short_runs(tiny_root):
    stream = build_stream("recurring", tiny_root, CATEGORY, length=400, warmup=64, seed=0)
    after = stream.frames[64:]
    labels = [frame.label for frame in after]
    assert sum(labels) / len(labels) == pytest.approx(0.40, abs=0.01)
    assert {frame.defect_type for frame in after if frame.label} == {"crack"}
    runs = [length for _, length in _runs(labels)]
    assert 2.0 < np.mean(runs) < 4.5 and min(runs) >= 1
    sources = [_source(frame.frame_id) for frame in after if frame.label]
    assert set(sources) == {"000", "001", "002", "003"} and len(sources) > 4 * 20  # the images recur
    augmentations = [frame.augmentation for frame in after if frame.label and _source(frame.frame_id) == "000"]
    assert len(set(augmentations)) == len(augmentations)  # each time with a fresh augmentation


def test_lighting_drift_brightens_the_frames(flat_root):
    stream = build_stream("lighting_drift", flat_root, CATEGORY, length=160, warmup=16, seed=0)
    means = [float(frame.load().mean()) for frame in stream.frames if frame.label == 0]
    windows = _window_means(means)
    assert np.all(np.diff(windows) > 0)
    assert windows[-1] / windows[0] > 1.15
    assert "light x1.350" in stream.frames[-1].augmentation


def test_position_drift_moves_the_part_and_its_masks(flat_root):
    stream = build_stream("position_drift", flat_root, CATEGORY, length=200, warmup=16, seed=0)
    good = [_dark_centroid_x(frame.load()) for frame in stream.frames if frame.label == 0]
    windows = _window_means(good)
    assert np.all(np.diff(windows) > 0)
    assert windows[-1] - windows[0] > 0.05 * FLAT_SIZE
    defects = [(index, frame) for index, frame in enumerate(stream.frames) if frame.label == 1]
    assert len(defects) >= 5
    for index, frame in defects:
        path = flat_root / CATEGORY / "ground_truth" / frame.defect_type / f"{_source(frame.frame_id)}_mask.png"
        original = load_mask(path, FLAT_SIZE)
        moved = np.argwhere(frame.mask(FLAT_SIZE))[:, 1].mean() - np.argwhere(original)[:, 1].mean()
        expected = position_shift(index / 199) * FLAT_SIZE
        assert moved == pytest.approx(expected, abs=(MAX_SHIFT + 0.03) * FLAT_SIZE + 1)


def test_changeover_switches_to_the_transformed_product_and_judges(tiny_root):
    stream = build_stream("changeover", tiny_root, CATEGORY, length=120, warmup=24, seed=0)
    assert stream.events == {60: "changeover"}
    before, after = stream.frames[:60], stream.frames[60:]
    assert not any("-B-" in frame.frame_id or "variant" in frame.augmentation for frame in before)
    assert all("-B-" in frame.frame_id and frame.augmentation.startswith("variant B") for frame in after)
    assert any(frame.label for frame in before) and any(frame.label for frame in after)
    for frame in (before[0], after[0], after[-1]):
        red, green, blue = frame.load().reshape(-1, 3).mean(axis=0)
        assert (green > blue > red) == (frame in after)
    assert len(stream.changeover_judges) == len(stream.judges) == 6
    for (judge_id, load), (b_id, load_b) in zip(stream.judges, stream.changeover_judges, strict=True):
        assert b_id == f"B-{judge_id}"
        original = load_image(tiny_root / CATEGORY / "train" / "good" / f"{judge_id.removeprefix('train_good_')}.png")
        judge, judge_b = load(), load_b()
        assert not np.array_equal(judge, original)  # through the camera too: its own augmentation
        red, green, blue = judge.reshape(-1, 3).mean(axis=0)
        assert red > green > blue
        red, green, blue = judge_b.reshape(-1, 3).mean(axis=0)
        assert green > blue > red  # product B


def test_no_frame_is_a_copy_of_a_judge(tiny_root):
    for name in STREAMS:
        stream = build_stream(name, tiny_root, CATEGORY, length=60, warmup=12, seed=4)
        judges = {_digest(load()) for _, load in stream.judges + stream.changeover_judges}
        assert len(judges) == len(stream.judges) + len(stream.changeover_judges)
        assert not any(_digest(frame.load()) in judges for frame in stream.frames), name


def test_same_seed_same_stream_other_seed_differs(tiny_root):
    first = build_stream("changeover", tiny_root, CATEGORY, length=80, warmup=10, seed=3)
    again = build_stream("changeover", tiny_root, CATEGORY, length=80, warmup=10, seed=3)
    other = build_stream("changeover", tiny_root, CATEGORY, length=80, warmup=10, seed=4)

    def summary(stream: Stream) -> list[tuple[str, int, str, str]]:
        return [(f.frame_id, f.label, f.defect_type, f.augmentation) for f in stream.frames]

    assert summary(first) == summary(again) and first.description == again.description
    for a, b in zip(first.frames[::5], again.frames[::5], strict=True):
        assert np.array_equal(a.load(), b.load()) and np.array_equal(a.mask(24), b.mask(24))
    assert summary(first) != summary(other)
    assert [f.frame_id for f in first.frames] != [f.frame_id for f in other.frames]
    assert any(not np.array_equal(a.load(), b.load()) for a, b in zip(first.frames, other.frames, strict=True))


def test_unknown_streams_and_incomplete_categories_are_refused(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="unknown stream 'rate5'") as refused:
        build_stream("rate5", tiny_root, CATEGORY)
    assert all(name in str(refused.value) for name in STREAMS)
    no_defects = tmp_path / "nodefects"
    for split in ("train", "test"):
        _save(no_defects / CATEGORY / split / "good" / "000.png", _textured(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="no defect images"):
        build_stream("rate2", no_defects, CATEGORY)
    no_train = tmp_path / "notrain"
    _save(no_train / CATEGORY / "test" / "good" / "000.png", _textured(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="train"):
        build_stream("rate2", no_train, CATEGORY)
    with pytest.raises(ValueError, match="warmup"):
        build_stream("rate2", tiny_root, CATEGORY, length=10, warmup=11)


@pytest.mark.realdata
def test_streams_from_the_bottle_images(mvtec_root):
    for name in ("bad_batch", "rate2"):
        stream = build_stream(name, mvtec_root, "bottle", length=120)
        assert len(stream.frames) == 120 and len(stream.judges) == 30
        warmup = 120 // 4  # a stream shorter than 4 * DEFAULT_WARMUP warms up on a quarter of its length
        assert all(frame.label == 0 for frame in stream.frames[:warmup])
        defective = [frame for frame in stream.frames if frame.label]
        if name == "bad_batch":
            assert len(defective) == 22 and {frame.defect_type for frame in defective} == {"broken_small"}
        else:
            assert len(defective) == round(0.02 * (120 - warmup))
        for frame in (stream.frames[0], defective[0], stream.frames[-1]):
            image = frame.load()
            assert image.shape == (900, 900, 3) and image.dtype == np.uint8
            assert frame.mask(64).any() == bool(frame.label)


@pytest.mark.realdata
def test_screw_streams_without_masks(screw_root):
    stream = build_stream("rate10", screw_root, "screw", length=40)
    assert len(stream.judges) == 40
    defective = [frame for frame in stream.frames if frame.label]
    assert len(defective) == 3 and not any(frame.mask_known for frame in defective)
    assert all(frame.mask_known for frame in stream.frames if not frame.label)
    assert defective[0].load().shape == (1024, 1024, 3) and not defective[0].mask(32).any()
