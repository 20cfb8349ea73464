"""Dataset readers: tiny fake trees of each layout, image/mask decoding, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from musc_online.datasets import (
    LAYOUTS,
    DatasetError,
    list_categories,
    list_samples,
    load_image,
    load_mask,
    native_mask,
    read_category,
)


def write_png(path: Path, value: int = 128, size: tuple[int, int] = (8, 6), mode: str = "RGB") -> Path:
    """A small uniform image (width, height) = size; masks get a defect square in the top-left corner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "mask":
        array = np.zeros(size[::-1], dtype=np.uint8)
        array[:2, :2] = 255
        Image.fromarray(array).save(path)
    else:
        Image.new(mode, size, value if mode in ("L", "I;16") else (value, value, value)).save(path)
    return path


@pytest.fixture
def mvtec_tree(tmp_path: Path) -> Path:
    for stem in ("000", "001"):
        write_png(tmp_path / "widget" / "test" / "good" / f"{stem}.png")
        write_png(tmp_path / "widget" / "test" / "scratch" / f"{stem}.png")
        write_png(tmp_path / "widget" / "ground_truth" / "scratch" / f"{stem}_mask.png", mode="mask")
    write_png(tmp_path / "widget" / "train" / "good" / "000.png")
    (tmp_path / "widget" / "test" / "good" / "notes.txt").write_text("not an image")
    write_png(tmp_path / "gadget" / "test" / "good" / "000.png")
    return tmp_path


def test_mvtec_layout(mvtec_tree: Path) -> None:
    samples = list_samples(mvtec_tree, "mvtec", "widget")
    assert [(s.path.parent.name, s.path.name, s.label) for s in samples] == [
        ("good", "000.png", 0),
        ("good", "001.png", 0),
        ("scratch", "000.png", 1),
        ("scratch", "001.png", 1),
    ]
    assert samples[2].mask_path == mvtec_tree / "widget" / "ground_truth" / "scratch" / "000_mask.png"
    assert samples[0].mask_path is None and samples[0].defect_type == "good"
    assert {s.category for s in samples} == {"widget"}
    assert len(list_samples(mvtec_tree, "mvtec", "widget", split="train")) == 1
    assert list_categories(mvtec_tree, "mvtec") == ["gadget", "widget"]


def test_mvtec_missing_mask_category_and_split(mvtec_tree: Path) -> None:
    (mvtec_tree / "widget" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"001_mask\.png"):
        list_samples(mvtec_tree, "mvtec", "widget")
    with pytest.raises(DatasetError, match=r"no category 'nope'.*mvtec layout expects"):
        list_samples(mvtec_tree, "mvtec", "nope")
    with pytest.raises(DatasetError, match=r"gadget[/\\]train"):
        list_samples(mvtec_tree, "mvtec", "gadget", split="train")
    (mvtec_tree / "gadget" / "test" / "good" / "000.png").unlink()
    with pytest.raises(DatasetError, match="no test images"):
        list_samples(mvtec_tree, "mvtec", "gadget")


def test_mvtec_category_without_ground_truth_has_image_level_truth_only(mvtec_tree: Path) -> None:
    for mask in (mvtec_tree / "widget" / "ground_truth" / "scratch").iterdir():
        mask.unlink()
    with pytest.raises(DatasetError, match=r"no mask for .*000\.png: expected .*000_mask\.png"):
        list_samples(mvtec_tree, "mvtec", "widget")  # ground_truth is there but lacks the masks: broken
    (mvtec_tree / "widget" / "ground_truth" / "scratch").rmdir()
    (mvtec_tree / "widget" / "ground_truth").rmdir()
    samples = list_samples(mvtec_tree, "mvtec", "widget")
    assert [(s.label, s.mask_path) for s in samples] == [(0, None), (0, None), (1, None), (1, None)]
    catalog = read_category(mvtec_tree, "widget")
    assert [s.mask_path for s in catalog.all_defects()] == [None, None]


def test_native_mask_keeps_the_image_resolution(mvtec_tree: Path) -> None:
    good, _, defect, _ = list_samples(mvtec_tree, "mvtec", "widget")
    mask = native_mask(defect)
    assert mask.shape == (6, 8) and mask.sum() == 4 and mask[:2, :2].all()
    assert native_mask(good).shape == (6, 8) and not native_mask(good).any()
    write_png(defect.mask_path, size=(4, 4), mode="mask")
    with pytest.raises(DatasetError, match=r"000_mask\.png: mask is 4x4, its image 6x8"):
        native_mask(defect)


def test_read_category_in_every_layout(tmp_path: Path) -> None:
    """Streams stage from btad, visa and folder trees too: judges from the train split where there is one."""
    write_png(tmp_path / "btad" / "01" / "train" / "ok" / "0.bmp")
    write_png(tmp_path / "btad" / "01" / "test" / "ok" / "1.bmp")
    write_png(tmp_path / "btad" / "01" / "test" / "ko" / "2.bmp")
    btad = read_category(tmp_path / "btad", "01", "btad")
    assert (len(btad.train_good), len(btad.test_good), list(btad.defects)) == (1, 1, ["ko"])
    visa = tmp_path / "visa"
    for name in ("0.JPG", "1.JPG", "2.JPG"):
        write_png(visa / "candle" / name)
    (visa / "split_csv").mkdir()
    (visa / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\ncandle,train,normal,candle/0.JPG,\n"
        "candle,test,normal,candle/1.JPG,\ncandle,test,anomaly,candle/2.JPG,candle/2.JPG\n"
    )
    catalog = read_category(visa, "candle", "visa")
    assert (len(catalog.train_good), len(catalog.test_good), list(catalog.defects)) == (1, 1, ["anomaly"])
    folder = tmp_path / "line3"
    write_png(folder / "good" / "0.png")
    write_png(folder / "dent" / "1.png")
    catalog = read_category(folder, "line3", "folder")
    assert (catalog.category, catalog.train_good, len(catalog.test_good), list(catalog.defects)) == (
        "line3",
        [],
        1,
        ["dent"],
    )
    (folder / "dent" / "1.png").unlink()
    with pytest.raises(DatasetError, match=r"'line3' under .*line3 \(folder layout\) has no defect images"):
        read_category(folder, "line3", "folder")


def test_unknown_layout_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=", ".join(LAYOUTS)):
        list_samples(tmp_path, "kolektor", "x")


def test_visa_layout(tmp_path: Path) -> None:
    write_png(tmp_path / "candle" / "Data" / "Images" / "Normal" / "0000.JPG")
    write_png(tmp_path / "candle" / "Data" / "Images" / "Anomaly" / "0001.JPG")
    write_png(tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "0001.png", mode="mask")
    write_png(tmp_path / "pcb1" / "Data" / "Images" / "Normal" / "0002.JPG")
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/0001.JPG,candle/Data/Masks/Anomaly/0001.png\n"
        "candle,test,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "pcb1,train,normal,pcb1/Data/Images/Normal/0002.JPG,\n"
    )
    samples = list_samples(tmp_path, "visa", "candle")
    assert [(s.path.name, s.label, s.defect_type) for s in samples] == [
        ("0001.JPG", 1, "anomaly"),
        ("0000.JPG", 0, "good"),
    ]
    assert samples[0].mask_path == tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "0001.png"
    assert list_categories(tmp_path, "visa") == ["candle", "pcb1"]
    assert len(list_samples(tmp_path, "visa", "pcb1", split="train")) == 1
    with pytest.raises(DatasetError, match="no train images"):
        list_samples(tmp_path, "visa", "candle", split="train")
    (tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "0001.png").unlink()
    with pytest.raises(DatasetError, match=r"row 2: file .*0001.png does not exist"):
        list_samples(tmp_path, "visa", "candle")


def test_btad_layout(tmp_path: Path) -> None:
    write_png(tmp_path / "01" / "test" / "ok" / "0000.bmp")
    write_png(tmp_path / "01" / "test" / "ko" / "0001.bmp")
    write_png(tmp_path / "01" / "ground_truth" / "ko" / "0001.png", mode="mask")
    write_png(tmp_path / "03" / "test" / "ko" / "0002.bmp")
    write_png(tmp_path / "03" / "ground_truth" / "ko" / "0002.bmp", mode="mask")
    write_png(tmp_path / "01" / "train" / "ok" / "0003.bmp")
    samples = list_samples(tmp_path, "btad", "01")
    assert [(s.path.name, s.label, s.defect_type) for s in samples] == [("0001.bmp", 1, "ko"), ("0000.bmp", 0, "ok")]
    assert samples[0].mask_path == tmp_path / "01" / "ground_truth" / "ko" / "0001.png"
    assert list_samples(tmp_path, "btad", "03")[0].mask_path.suffix == ".bmp"
    assert list_categories(tmp_path, "btad") == ["01", "03"]
    assert len(list_samples(tmp_path, "btad", "01", split="train")) == 1


def test_folder_layout_unlabelled_and_labelled(tmp_path: Path) -> None:
    plain = tmp_path / "line3"
    write_png(plain / "b.jpg")
    write_png(plain / "a.png")
    samples = list_samples(plain, "folder")
    assert [(s.path.name, s.label, s.defect_type, s.category) for s in samples] == [
        ("a.png", 0, "unlabeled", "line3"),
        ("b.jpg", 0, "unlabeled", "line3"),
    ]
    labelled = tmp_path / "labelled"
    write_png(labelled / "good" / "0.png")
    write_png(labelled / "dent" / "1.png")
    write_png(labelled / "dent" / "2.png")
    write_png(labelled / "masks" / "dent" / "1.png", mode="mask")
    samples = list_samples(labelled, "folder")
    assert [(s.path.name, s.label, s.mask_path is not None) for s in samples] == [
        ("1.png", 1, True),
        ("2.png", 1, False),
        ("0.png", 0, False),
    ]
    assert list_categories(labelled, "folder") == ["labelled"]
    with pytest.raises(DatasetError, match="only the 'test' split"):
        list_samples(labelled, "folder", split="train")


def test_load_image_converts_modes(tmp_path: Path) -> None:
    grey = load_image(write_png(tmp_path / "grey.png", value=7, mode="L"))
    assert grey.shape == (6, 8, 3) and grey.dtype == np.uint8 and (grey == 7).all()
    deep = load_image(write_png(tmp_path / "deep.png", value=65535, mode="I;16"))
    assert deep.shape == (6, 8, 3) and (deep == 255).all()
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (4, 3), (1, 2, 3, 0)).save(rgba)
    assert load_image(rgba).shape == (3, 4, 3) and tuple(load_image(rgba)[0, 0]) == (1, 2, 3)


def test_corrupt_and_missing_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match=r"broken\.png: not a readable image"):
        load_image(broken)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(write_png(tmp_path / "whole.png", size=(64, 64)).read_bytes()[:60])
    with pytest.raises(DatasetError, match=r"truncated\.png"):
        load_image(truncated)
    with pytest.raises(DatasetError, match=r"gone\.png: file not found"):
        load_mask(tmp_path / "gone.png", 4)


def test_load_mask(tmp_path: Path) -> None:
    mask_path = write_png(tmp_path / "m.png", size=(8, 8), mode="mask")
    mask = load_mask(mask_path, 4)
    assert mask.dtype == bool and mask.shape == (4, 4)
    assert mask[0, 0] and mask.sum() == 1
    assert not load_mask(None, 5).any() and load_mask(None, 5).shape == (5, 5)
    with pytest.raises(DatasetError, match=r"m\.png: mask is 8x8, its image 6x8"):
        load_mask(mask_path, 4, shape_hint=(6, 8, 3))


@pytest.mark.realdata
def test_mvtec_bottle(mvtec_root: Path) -> None:
    test = list_samples(mvtec_root, "mvtec", "bottle")
    assert len(test) == 83
    assert sum(s.label == 0 for s in test) == 20
    defective = [s for s in test if s.label == 1]
    assert len(defective) == 63 and all(s.mask_path is not None and s.mask_path.is_file() for s in defective)
    assert len(list_samples(mvtec_root, "mvtec", "bottle", split="train")) == 30
    assert "bottle" in list_categories(mvtec_root, "mvtec")
    image = load_image(test[0].path)
    assert image.shape == (900, 900, 3) and image.dtype == np.uint8
    mask = load_mask(defective[0].mask_path, 320, shape_hint=image.shape)
    assert mask.shape == (320, 320) and mask.any()


@pytest.mark.realdata
def test_screw_reads_without_masks_and_metal_plate_with_them(screw_root: Path, mpdd_root: Path) -> None:
    screw = list_samples(screw_root, "mvtec", "screw")
    assert (len(screw), sum(s.label for s in screw)) == (160, 119)
    assert all(s.mask_path is None for s in screw)
    plate = list_samples(mpdd_root, "mvtec", "metal_plate")
    defects = [s for s in plate if s.label]
    assert (len(plate), len(defects)) == (131, 81) and all(s.mask_path is not None for s in defects)
    assert native_mask(defects[0]).shape == (512, 512) and native_mask(defects[0]).any()
