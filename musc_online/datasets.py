"""Readers for the image datasets MuSc is evaluated on (MVTec AD, VisA, BTAD) and for a plain folder.

Each reader returns a sorted list of ``Sample``; nothing is decoded until ``load_image``/``load_mask``.
Every problem with the data raises ``DatasetError`` naming the file or folder and what was expected.

Layouts (ROOT is the ``root`` argument):
- ``mvtec``: ROOT/<category>/{train,test}/<defect_type>/*.png, ``good`` is normal; masks are
  ROOT/<category>/ground_truth/<defect_type>/<stem>_mask.png. A category without a ``ground_truth``
  folder has image-level truth only (every defective sample's ``mask_path`` is None); one with the
  folder must hold every defective image's mask.
- ``visa``: ROOT/split_csv/1cls.csv with columns object,split,label,image,mask (label ``normal`` or
  ``anomaly``, paths relative to ROOT).
- ``btad``: ROOT/<category>/{train,test}/{ok,ko}/*, masks ROOT/<category>/ground_truth/ko/<stem>.png
  (or .bmp); without ``ground_truth`` image-level only, as for mvtec.
- ``folder``: one category, named after ROOT. Either ROOT/*.<image> (unlabelled: label 0, defect type
  ``unlabeled``) or ROOT/good/ plus ROOT/<defect_type>/ folders (label 1), with optional masks
  ROOT/masks/<defect_type>/<stem>.png or ROOT/ground_truth/<defect_type>/<stem>[_mask].png.
  It has a single split, ``test``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LAYOUT_HELP: dict[str, str] = {
    "mvtec": "ROOT/<category>/{train,test}/<defect_type>/*.png, masks "
    "ROOT/<category>/ground_truth/<defect_type>/<stem>_mask.png",
    "visa": "ROOT/split_csv/1cls.csv (columns object,split,label,image,mask; paths relative to ROOT)",
    "btad": "ROOT/<category>/{train,test}/{ok,ko}/*, masks ROOT/<category>/ground_truth/ko/<stem>.png|.bmp",
    "folder": "ROOT/*.png|jpg|jpeg|bmp|tif|tiff, or ROOT/good/ and ROOT/<defect_type>/ "
    "(optional masks ROOT/masks/<defect_type>/<stem>.png)",
}
LAYOUTS: tuple[str, ...] = tuple(LAYOUT_HELP)
_MASK_DIRS = ("masks", "ground_truth")
_VISA_CSV = Path("split_csv") / "1cls.csv"


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or not laid out as its layout expects."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: label 1 = anomalous; ``mask_path`` is None for normal or unlabelled images."""

    path: Path
    label: int
    mask_path: Path | None
    defect_type: str
    category: str


def _check_layout(layout: str) -> None:
    if layout not in LAYOUT_HELP:
        raise DatasetError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def _expected(layout: str) -> str:
    return f"the {layout} layout expects {LAYOUT_HELP[layout]}"


def images_in(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; a missing folder is a DatasetError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)


def _read_tree(
    split_dir: Path,
    layout: str,
    category: str,
    normal_dir: str,
    find_mask: Callable[[str, str], list[Path]],
    mask_required: bool,
) -> list[Sample]:
    """Samples from split_dir/<defect_type>/*: ``normal_dir`` is label 0, other folders label 1."""
    if not split_dir.is_dir():
        raise DatasetError(f"no split folder {split_dir} ({_expected(layout)})")
    samples = []
    for defect_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and p.name not in _MASK_DIRS):
        normal = defect_dir.name == normal_dir
        for path in images_in(defect_dir):
            mask_path = None
            if not normal:
                candidates = find_mask(defect_dir.name, path.stem)
                mask_path = _first_existing(candidates)
                if mask_path is None and mask_required:
                    raise DatasetError(f"no mask for {path}: expected {candidates[0]} ({_expected(layout)})")
            samples.append(Sample(path, int(not normal), mask_path, defect_dir.name, category))
    return samples


def _category_dir(root: Path, layout: str, category: str | None) -> Path:
    if category is None:
        raise DatasetError(f"the {layout} layout needs a category; found {list_categories(root, layout)}")
    folder = root / category
    if not folder.is_dir():
        raise DatasetError(f"no category {category!r}: {folder} is not a folder ({_expected(layout)})")
    return folder


def _has_masks(folder: Path) -> bool:
    """Whether a category has pixel truth: then every defective image needs its mask, else none has one."""
    return (folder / "ground_truth").is_dir()


def _read_mvtec(root: Path, category: str | None, split: str) -> list[Sample]:
    folder = _category_dir(root, "mvtec", category)

    def find_mask(defect_type: str, stem: str) -> list[Path]:
        return [folder / "ground_truth" / defect_type / f"{stem}_mask.png"]

    return _read_tree(folder / split, "mvtec", folder.name, "good", find_mask, _has_masks(folder))


def _read_btad(root: Path, category: str | None, split: str) -> list[Sample]:
    folder = _category_dir(root, "btad", category)

    def find_mask(defect_type: str, stem: str) -> list[Path]:
        return [folder / "ground_truth" / defect_type / f"{stem}{suffix}" for suffix in (".png", ".bmp")]

    return _read_tree(folder / split, "btad", folder.name, "ok", find_mask, _has_masks(folder))


def _read_folder(root: Path, category: str | None, split: str) -> list[Sample]:
    if category not in (None, root.name):
        raise DatasetError(f"the folder layout has one category, {root.name!r} (the folder's name), not {category!r}")
    if split != "test":
        raise DatasetError(f"the folder layout has only the 'test' split, not {split!r}: {root}")
    if not (root / "good").is_dir():
        return [Sample(path, 0, None, "unlabeled", root.name) for path in images_in(root)]

    def find_mask(defect_type: str, stem: str) -> list[Path]:
        return [
            root / "masks" / defect_type / f"{stem}.png",
            root / "ground_truth" / defect_type / f"{stem}.png",
            root / "ground_truth" / defect_type / f"{stem}_mask.png",
        ]

    return _read_tree(root, "folder", root.name, "good", find_mask, mask_required=False)


def _visa_rows(root: Path) -> list[dict[str, str]]:
    csv_path = root / _VISA_CSV
    if not csv_path.is_file():
        raise DatasetError(f"no split file {csv_path} ({_expected('visa')})")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"object", "split", "label", "image", "mask"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{csv_path} lacks the columns {sorted(missing)} ({_expected('visa')})")
        return list(reader)


def _visa_file(root: Path, relative: str, row: int) -> Path:
    path = root / relative
    if not relative or not path.is_file():
        raise DatasetError(f"{root / _VISA_CSV} row {row}: file {path} does not exist")
    return path


def _read_visa(root: Path, category: str | None, split: str) -> list[Sample]:
    rows = _visa_rows(root)
    if category not in {row["object"] for row in rows}:
        raise DatasetError(f"no category {category!r} in {root / _VISA_CSV}; found {list_categories(root, 'visa')}")
    samples = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        if row["object"] != category or row["split"] != split:
            continue
        if row["label"] not in ("normal", "anomaly"):
            raise DatasetError(f"{root / _VISA_CSV} row {number}: label {row['label']!r} is not normal/anomaly")
        anomalous = row["label"] == "anomaly"
        mask_path = _visa_file(root, row["mask"], number) if anomalous else None
        defect_type = "anomaly" if anomalous else "good"
        samples.append(Sample(_visa_file(root, row["image"], number), int(anomalous), mask_path, defect_type, category))
    return samples


_READERS: dict[str, Callable[[Path, str | None, str], list[Sample]]] = {
    "mvtec": _read_mvtec,
    "visa": _read_visa,
    "btad": _read_btad,
    "folder": _read_folder,
}


def list_samples(root: str | Path, layout: str, category: str | None = None, split: str = "test") -> list[Sample]:
    """All samples of one category and split ("train" or "test"), sorted by path, for batch or replay runs."""
    _check_layout(layout)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder ({_expected(layout)})")
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', not {split!r}")
    samples = _READERS[layout](root, category, split)
    if not samples:
        raise DatasetError(f"no {split} images for category {category!r} under {root} ({_expected(layout)})")
    return sorted(samples, key=lambda sample: sample.path)


def list_categories(root: str | Path, layout: str) -> list[str]:
    """The categories a dataset root holds, sorted (what ``--category ALL`` iterates over)."""
    _check_layout(layout)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder ({_expected(layout)})")
    if layout == "folder":
        return [root.name]
    if layout == "visa":
        categories = sorted({row["object"] for row in _visa_rows(root)})
    else:
        categories = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
    if not categories:
        raise DatasetError(f"no categories under {root} ({_expected(layout)})")
    return categories


def _open_image(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image as RGB uint8 (H, W, 3): grey, palette and RGBA are converted, 16-bit scaled to 8."""
    image = _open_image(path)
    if image.mode.startswith("I"):  # 16-bit grey ("I;16*", or "I" as PNG decodes it): full range 0..65535
        grey = np.asarray(image).astype(np.float64) / 257.0
        return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if image.mode == "F":
        raise DatasetError(f"{path}: floating-point images are not supported")
    return np.asarray(image.convert("RGB"))


def load_mask(path: str | Path | None, size: int, shape_hint: tuple[int, ...] | None = None) -> np.ndarray:
    """A ground-truth mask as bool (size, size), non-zero = defect, resized NEAREST; None gives all False.

    ``shape_hint``, the (H, W, ...) shape of the image the mask belongs to, catches mismatched files.
    """
    if path is None:
        return np.zeros((size, size), dtype=bool)
    defect = Image.fromarray(_decode_mask(path, shape_hint))
    return np.asarray(defect.resize((size, size), Image.Resampling.NEAREST), dtype=bool)


def _decode_mask(path: str | Path, shape_hint: tuple[int, ...] | None) -> np.ndarray:
    """A mask file as bool (H, W) at its own resolution, non-zero = defect; checked against ``shape_hint``."""
    image = _open_image(path)
    if shape_hint is not None and (image.height, image.width) != tuple(shape_hint[:2]):
        raise DatasetError(f"{path}: mask is {image.height}x{image.width}, its image {shape_hint[0]}x{shape_hint[1]}")
    if len(image.getbands()) > 1:
        image = image.convert("L")
    return np.asarray(image) != 0


def native_mask(sample: Sample) -> np.ndarray:
    """A sample's ground truth as bool (H, W) at its image's own resolution; all False without a mask.

    Only the image's header is read; a mask of another size than its image is a DatasetError naming it.
    """
    try:
        with Image.open(sample.path) as image:
            shape = (image.height, image.width)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{sample.path}: not a readable image ({exc})") from exc
    if sample.mask_path is None:
        return np.zeros(shape, dtype=bool)
    return _decode_mask(sample.mask_path, shape)


@dataclass(frozen=True)
class Category:
    """The file lists of one MVTec-layout category: train/good, test/good and defects by type."""

    root: Path
    category: str
    train_good: list[Sample]
    test_good: list[Sample]
    defects: dict[str, list[Sample]]

    def largest_type(self) -> str:
        """The defect type with the most images (ties: the first by name)."""
        return max(sorted(self.defects), key=lambda name: len(self.defects[name]))

    def all_defects(self) -> list[Sample]:
        """Every defective test image, by type then path."""
        return [sample for name in sorted(self.defects) for sample in self.defects[name]]


def read_category(root: str | Path, category: str, layout: str = "mvtec") -> Category:
    """The file lists of a category in any layout, for staging streams; DatasetError naming what is missing.

    The judges come from the train split's normal images; the folder layout has no train split, so its
    streams start without judges. Defective images without masks are fine (image-level truth only).
    """
    root = Path(root)
    has_train = layout != "folder"
    needs = (
        "a stream needs normal train images (the judges), normal and defective test images"
        if has_train
        else "a stream needs normal and defective test images"
    )
    try:
        train = list_samples(root, layout, category, "train") if has_train else []
        test = list_samples(root, layout, category, "test")
    except DatasetError as exc:
        raise DatasetError(f"cannot build a stream from category {category!r} under {root}: {exc}") from exc
    train_good = [s for s in train if s.label == 0]
    test_good = [s for s in test if s.label == 0]
    defects: dict[str, list[Sample]] = {}
    for sample in test:
        if sample.label == 1:
            defects.setdefault(sample.defect_type, []).append(sample)
    wanted = (("train/good", train_good),) if has_train else ()
    lacking = [what for what, present in (*wanted, ("test/good", test_good), ("defect", defects)) if not present]
    if lacking:
        raise DatasetError(
            f"category {category!r} under {root} ({layout} layout) has no {' or '.join(lacking)} images ({needs})"
        )
    return Category(root, test[0].category, train_good, test_good, defects)
