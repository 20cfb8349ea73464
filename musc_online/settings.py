"""The library's settings: every knob's name, type, default, help text and check, declared once.

Each settings class is a frozen dataclass whose fields are made with ``knob``; constructing one checks
every value (``SettingError`` names the field). The daemon's TOML files and ``MUSC_*`` variables fill these
same classes, and ``config/default.toml`` is generated from them, so a setting is never declared twice.
Nothing here imports torch: reading settings is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from musc_online.backbones import available_backbones, default_settings

Rounding = Literal["ceil", "floor"]
Check = Callable[[Any], str | None]  # the problem with a value, or None when it is fine


class SettingError(ValueError):
    """A setting's value is out of range. ``keys`` names the fields involved (a field of a nested settings class
    as ``section.field``), the first being the one whose value is refused."""

    def __init__(self, keys: str | tuple[str, ...], message: str) -> None:
        self.keys = (keys,) if isinstance(keys, str) else keys
        self.message = message
        super().__init__(f"{self.keys[0]} {message}")


def knob(default: Any, help: str, *checks: Check, exposed: bool = True) -> Any:
    """A settings field: its default, one line of help (the generated defaults file's comment), its checks.

    ``exposed=False`` keeps a library-only knob out of the daemon's files.
    """
    metadata = {"help": help, "checks": checks, "exposed": exposed}
    if isinstance(default, list | dict):
        raise TypeError("settings defaults are immutable: use a tuple")
    return field(default=default, metadata=metadata)


def check_fields(settings: object) -> None:
    """Run every field's checks (``None`` means "not set" and is not checked); SettingError on the first failure."""
    for item in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, item.name)
        for check in item.metadata.get("checks", ()):
            if value is not None and (problem := check(value)):
                raise SettingError(item.name, problem)


def exposed_fields(cls: type) -> list[Field]:
    """The fields of a settings class that the daemon's files set (not library-only knobs, not nested classes)."""
    return [f for f in fields(cls) if f.metadata.get("exposed") and f.default is not MISSING]


# ---------------------------------------------------------------------------------------------- checks
def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"must be at least {low}"


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def between(low: float, high: float) -> Check:
    return lambda value: None if low <= value <= high else f"must be in [{low}, {high}]"


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def matches(pattern: str, what: str) -> Check:
    return lambda value: None if re.fullmatch(pattern, value) else f"must be {what}"


def not_empty(values: tuple[Any, ...]) -> str | None:
    return None if values else "must not be empty"


def each(check: Check) -> Check:
    """Apply ``check`` to every element of a tuple."""

    def every(values: tuple[Any, ...]) -> str | None:
        problems = [problem for value in values if (problem := check(value))]
        return f"every element {problems[0]}" if problems else None

    return every


def odd_positive(value: int) -> str | None:
    return None if value >= 1 and value % 2 == 1 else "must be a positive odd number"


def backbone_image_size(backbone: str) -> int | None:
    """The input size ``backbone`` runs at unless told otherwise, from the registry (no torch); None if unknown."""
    try:
        return default_settings(backbone)[0]
    except ValueError:  # the model settings' own check names the unknown backbone
        return None


# -------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ModelSettings:
    """The backbone that extracts features; empty image_size, layers and weights mean the backbone's own.

    ``backbone_image_size`` names a backbone's own size without importing torch.
    """

    backbone: str = knob(
        "efficientnet_lite0",
        "Feature extractor (see `musc-online eval --help` for the list); efficientnet_lite0 runs on a CPU.",
        one_of(*available_backbones()),
    )
    image_size: int | None = knob(
        None,
        "Square input size in pixels; empty = the backbone's own, as `musc-online eval` uses (ViT-L-14-336 and "
        "DINOv2: 518, dino_vitb8: 512, efficientnet_lite0: 320); `musc-daemon config show` prints it.",
        at_least(1),
    )
    layers: tuple[int, ...] = knob((), "Feature layers; empty = the backbone's default.", each(at_least(0)))
    weights: Path | None = knob(None, "Local weight file; empty = the library cache (nothing is downloaded).")
    device: str = knob(
        "auto",
        "auto (the GPU when CUDA is present, else the CPU), cpu, cuda or cuda:N.",
        matches(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"),
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class MuscSettings:
    """The method's knobs; defaults are the paper's MVTec AD settings (ceil interval rounding)."""

    r_list: tuple[int, ...] = knob(
        (1, 3, 5), "LNAMD aggregation degrees (positive odd numbers).", not_empty, each(odd_positive)
    )
    topmin_max: float = knob(
        0.3,
        "MSM interval: fraction of the reference images whose smallest distances are averaged, in (0, 1].",
        positive,
        between(0.0, 1.0),
    )
    topk_rounding: Rounding = knob(
        "ceil",
        "Interval size rounding: ceil, or floor (the reference code's, kept for parity).",
        one_of("ceil", "floor"),
    )
    k_list: tuple[int, ...] = knob((1, 2, 3), "RsCIN window sizes (0 disables a window).", not_empty, each(at_least(0)))
    block_elements: int | None = knob(
        None, "Similarity block size; None picks one per device.", at_least(1), exposed=False
    )

    def __post_init__(self) -> None:
        check_fields(self)


TILE_MODES = ("position", "pooled")


@dataclass(frozen=True)
class TileSettings:
    """High-resolution tiles scored besides the whole frame (see ``musc_online.tiling``); off by default."""

    grid: int = knob(
        0, "Tiles per side (grid x grid) cut from each frame besides the whole-frame pass; 0 = no tiles.", at_least(0)
    )
    tile_size: int = knob(
        0,
        "Instead of grid: tile side in frame pixels (after `resolution`); the grid is as many tiles as cover the "
        "frame. 0 = use grid.",
        at_least(0),
    )
    overlap: float = knob(
        0.125,
        "How far each tile reaches into its neighbours, as a fraction of a tile cell's side on each side, in [0, 0.5].",
        between(0.0, 0.5),
    )
    halo: int = knob(
        2,
        "position mode: patches by which a reference's tile is widened around the frame's tile (tolerates parts "
        "that sit a little differently).",
        at_least(0),
    )
    mode: str = knob(
        "position",
        '"position": each tile against the same tile of the references (fixed parts); "pooled": against all tiles '
        "of the references (parts at any place or angle).",
        one_of(*TILE_MODES),
    )
    resolution: int = knob(
        0, "Longer side in pixels frames are resized to before tiling; 0 = the camera's native resolution.", at_least(0)
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.grid and self.tile_size:
            raise SettingError(("tile_size", "grid"), "cannot be set together with grid: set one of them")

    @property
    def enabled(self) -> bool:
        """Whether frames are tiled at all."""
        return bool(self.grid or self.tile_size)
