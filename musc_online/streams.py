"""Seeded stress streams for the online scorer, staged from the real images of one dataset category.

Replaying a test split in folder order says little about a line. A line runs at a defect rate of a few
percent, sees the same good parts again and again, gets a bad batch of one defect, drifts in lighting and
position, and changes over to another product. Each stream here stages one of those situations from one
category in any layout ``datasets.list_samples`` reads (MVTec AD: ``<root>/<category>/train/good``,
``test/good``, ``test/<defect_type>``, ``ground_truth`` when the category has masks), reproducibly from a seed:

- good frames are test/good images and the judges are the train/good images: a line never sees its seed parts
  again (when good frames also came from train/good, over a third of metal_plate's were a judge's own image,
  augmented, and none of those was ever flagged: the streams flattered false alarms and unsure parts);
- every frame is an augmented image (``augment``: small shift, rotation, brightness, noise and a JPEG round
  trip); the judges are augmented too, with their own draws, as a plant's seed pictures come through the same
  camera as its frames (clean judges would score every camera frame a little abnormal and skew the bands
  calibrated from them);
- slow drifts of lighting and position are pure functions of the stream position t in [0, 1];
- the changeover stream switches half way to a strongly changed variant of the product (colour channels
  swapped, part scaled down), which comes with its own judges.

Building a stream only lists files and draws the random choices; images are read when a frame's ``load``
or ``mask`` is called. The same (name, seed, length, warmup) gives the same ids, labels and pixels.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from musc_online.augment import draw_augmentation, lighting_gain, position_shift
from musc_online.datasets import Category, Sample, read_category
from musc_online.stream_images import ImageLoader, Judge, MaskLoader, judges_of

VARIANT_NOTE = "variant B (channels BRG, scaled 85%)"
DEFAULT_LENGTH = 400
DEFAULT_WARMUP = 64

StreamBuilder = Callable[..., "Stream"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class StreamFrame:
    """One frame of a stream with its ground truth (label 1 = defective) and what was done to its image."""

    frame_id: str
    label: int
    defect_type: str
    load: Callable[[], np.ndarray]  # RGB uint8 (H, W, 3)
    mask: Callable[[int], np.ndarray]  # ground-truth mask, bool (size, size)
    augmentation: str = ""  # short description of the changes applied, "" for none
    mask_known: bool = True  # False: a defective frame of a category without masks (image-level truth only)


@dataclass
class Stream:
    """A staged line: frames in order, the judges to start from, and named events by frame index."""

    name: str
    description: str
    frames: list[StreamFrame]
    judges: list[Judge]
    events: dict[int, str] = field(default_factory=dict)
    changeover_judges: list[Judge] = field(default_factory=list)  # product B's judges (changeover stream only)
    warmup: int = 0  # the first ``warmup`` frames are good
    seed: int = 0


# --- stream layouts ---------------------------------------------------------------------------------------


class _Rngs(NamedTuple):
    """Independent generators for the layout, the good-image order, the frames' and the judges' augmentations."""

    layout: np.random.Generator
    goods: np.random.Generator
    frames: np.random.Generator
    judges: np.random.Generator


def _rngs(name: str, seed: int) -> _Rngs:
    children = np.random.SeedSequence([seed, zlib.crc32(name.encode())]).spawn(4)
    return _Rngs(*(np.random.default_rng(child) for child in children))


def _cycle(rng: np.random.Generator, items: Sequence[_T]) -> Iterator[_T]:
    """``items`` in a fresh shuffled order each round, endlessly: every item recurs, none twice in a round."""
    while True:
        for index in rng.permutation(len(items)):
            yield items[int(index)]


def _count(rate: float, frames: int) -> int:
    """How many of ``frames`` are defective at ``rate`` (rounded half up; at least one when there is room)."""
    if frames <= 0 or rate <= 0.0:
        return 0
    return min(frames, max(1, math.floor(rate * frames + 0.5)))


def _spread(rng: np.random.Generator, start: int, end: int, rate: float) -> list[int]:
    """Random positions in [start, end) for a share ``rate`` of them, sorted."""
    room = max(0, end - start)
    return sorted(int(start + p) for p in rng.choice(room, size=_count(rate, room), replace=False))


def _check_lengths(length: int, warmup: int) -> None:
    if length < 1:
        raise ValueError(f"stream length must be at least 1, got {length}")
    if not 0 <= warmup <= length:
        raise ValueError(f"warmup must be in [0, length={length}], got {warmup}")


def _assemble(
    name: str,
    description: str,
    catalog: Category,
    slots: Sequence[Sample | None],
    *,
    seed: int,
    warmup: int,
    rngs: _Rngs,
    drift: str = "",
    switch: int | None = None,
) -> Stream:
    """Frames for ``slots`` (None = a good part, else the defective sample), each with its own augmentation."""
    goods = _cycle(rngs.goods, catalog.test_good)
    frames = []
    last = max(1, len(slots) - 1)
    for index, defect in enumerate(slots):
        t = index / last
        augmentation = replace(
            draw_augmentation(rngs.frames),
            light=lighting_gain(t) if drift == "lighting" else 1.0,
            drift_x=position_shift(t) if drift == "position" else 0.0,
        )
        product_b = switch is not None and index >= switch
        if defect is None:
            sample = next(goods)
            label, defect_type, source = 0, "good", f"test_good_{sample.path.stem}"
        else:
            sample = defect
            label, defect_type, source = 1, defect.defect_type, defect.path.stem
        product = "B-" if product_b else ""
        note = augmentation.describe()
        frames.append(
            StreamFrame(
                frame_id=f"f{index:05d}-{product}{defect_type}-{source}-aug",
                label=label,
                defect_type=defect_type,
                load=ImageLoader(sample.path, augmentation, product_b),
                mask=MaskLoader(sample.mask_path if label else None, augmentation, product_b),
                augmentation=f"{VARIANT_NOTE}; {note}" if product_b else note,
                mask_known=label == 0 or sample.mask_path is not None,
            )
        )
    return Stream(
        name=name,
        description=description,
        frames=frames,
        judges=judges_of(catalog, rngs.judges),
        events={switch: "changeover"} if switch is not None else {},
        changeover_judges=judges_of(catalog, rngs.judges, product_b=True) if switch is not None else [],
        warmup=warmup,
        seed=seed,
    )


def _rate_stream(
    catalog: Category,
    length: int = DEFAULT_LENGTH,
    warmup: int = DEFAULT_WARMUP,
    seed: int = 0,
    *,
    name: str,
    rate: float,
    drift: str = "",
) -> Stream:
    """Defects of every type at ``rate`` of the frames after warm-up, at random positions; optional slow drift."""
    rngs = _rngs(name, seed)
    layout = rngs.layout
    slots: list[Sample | None] = [None] * length
    pool = _cycle(layout, catalog.all_defects())
    positions = _spread(layout, warmup, length, rate)
    for position in positions:
        slots[position] = next(pool)
    drifting = {
        "lighting": f", lighting gain drifting from 1.0 to {lighting_gain(1.0):.2f}",
        "position": f", the part drifting sideways up to {position_shift(1.0):.0%} of the side",
    }.get(drift, "")
    description = (
        f"{catalog.category}: {len(positions)} defects of any type ({rate:.0%} of the {length - warmup} frames after "
        f"a {warmup}-frame good warm-up) at random positions{drifting}; every frame augmented."
    )
    return _assemble(name, description, catalog, slots, seed=seed, warmup=warmup, rngs=rngs, drift=drift)


def _bad_batch_stream(
    catalog: Category,
    length: int = DEFAULT_LENGTH,
    warmup: int = DEFAULT_WARMUP,
    seed: int = 0,
    *,
    name: str,
) -> Stream:
    """Good parts, then every image of the largest defect type in a row (shuffled), then good parts again."""
    rngs = _rngs(name, seed)
    layout = rngs.layout
    defect_type = catalog.largest_type()
    batch = [catalog.defects[defect_type][int(i)] for i in layout.permutation(len(catalog.defects[defect_type]))]
    room = length - warmup
    if room < len(batch) + 2:
        raise ValueError(
            f"bad_batch needs at least warmup + {len(batch) + 2} frames (the {len(batch)} {defect_type!r} images and "
            f"a good part on each side), got length {length} with warmup {warmup}"
        )
    start = warmup + (room - len(batch)) // 2  # centred in the frames after warm-up
    slots: list[Sample | None] = [None] * length
    slots[start : start + len(batch)] = batch
    description = (
        f"{catalog.category}: good parts, then all {len(batch)} {defect_type!r} defects in a row (frames {start} to "
        f"{start + len(batch) - 1}), then good parts again; every frame augmented."
    )
    return _assemble(name, description, catalog, slots, seed=seed, warmup=warmup, rngs=rngs)


def _run_layout(rng: np.random.Generator, frames: int, share: float, mean_run: float) -> list[bool]:
    """``frames`` flags, a share ``share`` of them True in runs of geometric length (mean ``mean_run``)."""
    defective = _count(share, frames)
    runs: list[int] = []
    while sum(runs) < defective:
        runs.append(int(rng.geometric(1.0 / mean_run)))
    if runs:
        runs[-1] -= sum(runs) - defective
    good = frames - defective
    while len(runs) > 1 and len(runs) - 1 > good:  # too few good parts to keep every run apart: merge
        runs[-2] += runs.pop()
    gaps = rng.multinomial(good - max(0, len(runs) - 1), [1.0 / (len(runs) + 1)] * (len(runs) + 1))
    gaps[1:-1] += 1  # runs never touch, so each run is as long as drawn
    flags: list[bool] = [False] * int(gaps[0])
    for run, gap in zip(runs, gaps[1:], strict=True):
        flags += [True] * run + [False] * int(gap)
    return flags


def _recurring_stream(
    catalog: Category,
    length: int = DEFAULT_LENGTH,
    warmup: int = DEFAULT_WARMUP,
    seed: int = 0,
    *,
    name: str,
    share: float = 0.40,
    mean_run: float = 3.0,
) -> Stream:
    """The largest defect type in ``share`` of the frames after warm-up, in short runs; its images recur."""
    rngs = _rngs(name, seed)
    layout = rngs.layout
    defect_type = catalog.largest_type()
    pool = _cycle(layout, catalog.defects[defect_type])
    flags = [False] * warmup + _run_layout(layout, length - warmup, share, mean_run)
    slots = [next(pool) if flag else None for flag in flags]
    count = sum(flags)
    description = (
        f"{catalog.category}: the {defect_type!r} defect recurring in {count} of the {length - warmup} frames after "
        f"warm-up ({share:.0%}) in runs of mean length {mean_run:g}, its {len(catalog.defects[defect_type])} images "
        f"recurring with fresh augmentations."
    )
    return _assemble(name, description, catalog, slots, seed=seed, warmup=warmup, rngs=rngs)


def _changeover_stream(
    catalog: Category,
    length: int = DEFAULT_LENGTH,
    warmup: int = DEFAULT_WARMUP,
    seed: int = 0,
    *,
    name: str,
    rate: float = 0.05,
) -> Stream:
    """Product A with defects at ``rate`` for the first half, then product B (``variant``) at the same rate."""
    rngs = _rngs(name, seed)
    layout, switch = rngs.layout, length // 2
    slots: list[Sample | None] = [None] * length
    pool = _cycle(layout, catalog.all_defects())
    first = _spread(layout, warmup, switch, rate)
    second = _spread(layout, max(switch, warmup), length, rate)
    for position in first + second:
        slots[position] = next(pool)
    description = (
        f"{catalog.category}: product A with {len(first)} defects ({rate:.0%}) until frame {switch}, then product B "
        f"({VARIANT_NOTE}) with {len(second)} defects and its own judges; every frame augmented."
    )
    return _assemble(name, description, catalog, slots, seed=seed, warmup=warmup, rngs=rngs, switch=switch)


STREAMS: dict[str, tuple[StreamBuilder, str]] = {
    "rate2": (partial(_rate_stream, name="rate2", rate=0.02), "realistic defect rate of 2 % after a good warm-up"),
    "rate10": (partial(_rate_stream, name="rate10", rate=0.10), "defect rate of 10 % after a good warm-up"),
    "bad_batch": (
        partial(_bad_batch_stream, name="bad_batch"),
        "good parts, then every image of the largest defect type in a row, then good parts again",
    ),
    "recurring": (
        partial(_recurring_stream, name="recurring"),
        "one defect type recurring in 40 % of the frames after warm-up, in short runs (mean 3)",
    ),
    "lighting_drift": (
        partial(_rate_stream, name="lighting_drift", rate=0.05, drift="lighting"),
        "5 % defects while the lighting gain drifts from 1.0 to 1.35",
    ),
    "position_drift": (
        partial(_rate_stream, name="position_drift", rate=0.05, drift="position"),
        "5 % defects while the part drifts sideways up to 10 % of the side",
    ),
    "changeover": (
        partial(_changeover_stream, name="changeover"),
        "5 % defects of product A, then a strongly changed product B with its own judges",
    ),
}


def build_stream(
    name: str,
    root: str | Path,
    category: str,
    length: int = DEFAULT_LENGTH,
    warmup: int | None = None,
    seed: int = 0,
    layout: str = "mvtec",
) -> Stream:
    """The stream ``name`` from ``root``/``category`` in any dataset layout (``datasets.read_category``: the
    folder layout has no train split, so no judges); cheap: images are read by ``load``.

    ``warmup`` good frames start it: by default ``DEFAULT_WARMUP``, or a quarter of a shorter stream's length.
    """
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; known streams: {', '.join(STREAMS)}")
    builder, _ = STREAMS[name]
    warmup = min(DEFAULT_WARMUP, length // 4) if warmup is None else warmup
    _check_lengths(length, warmup)
    return builder(read_category(root, category, layout), length, warmup, seed)
