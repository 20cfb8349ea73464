"""Options shared by the commands that build a backbone and MuSc settings (``eval``, ``replay``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from PIL import Image

from musc_online.backbones import available_backbones, create_backbone, default_settings
from musc_online.cli.common import int_list
from musc_online.datasets import LAYOUTS
from musc_online.roi import CareArea

if TYPE_CHECKING:
    import torch

    from musc_online.backbones import Backbone
from musc_online.settings import MuscSettings, SettingError, TileSettings

Root = Annotated[Path, typer.Option(help="Dataset root folder.")]
Layout = Annotated[str, typer.Option(help=f"Dataset layout: {', '.join(LAYOUTS)}.")]
BackboneName = Annotated[
    str, typer.Option("--backbone", help=f"Feature extractor: {', '.join(available_backbones())}.")
]
Size = Annotated[int | None, typer.Option(help="Square input size in pixels (default: the backbone's).")]
Layers = Annotated[str | None, typer.Option(help="Feature layers, e.g. 6,12,18,24 (default: the backbone's).")]
Weights = Annotated[Path | None, typer.Option(help="Local weight file instead of the library cache.")]
RList = Annotated[str, typer.Option(help="LNAMD aggregation degrees.")]
TopminMax = Annotated[float, typer.Option(help="MSM interval: fraction of the reference images averaged.")]
TopkRounding = Annotated[str, typer.Option(help="Interval size rounding: ceil, or floor (reference parity).")]
KList = Annotated[str, typer.Option(help="RsCIN window sizes (VisA: 1,8,9; 0 disables).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the figures (fractions) to this file.")]
Tiles = Annotated[int, typer.Option("--tiles", help="Tiles per side scored besides the whole image; 0 = none.")]
TileSize = Annotated[int, typer.Option(help="Instead of --tiles: tile side in image pixels (native tiles).")]
TileMode = Annotated[str, typer.Option(help="position (each tile against the same tile) or pooled (against all).")]
TileOverlap = Annotated[float, typer.Option(help="Tile overlap, as a fraction of a tile's side on each side.")]
TileHalo = Annotated[int, typer.Option(help="position mode: patches a reference's tile is widened by.")]
TileResolution = Annotated[int, typer.Option(help="Longer side images are resized to before tiling; 0 = native.")]
TILE_DEFAULTS = TileSettings()  # the tile options' defaults are the settings' own (``[tiles]``)
CareMask = Annotated[
    Path | None,
    typer.Option(help="Care area: a PNG over the images (same aspect) whose non-black pixels alone make image scores."),
]


def build_backbone(
    name: str, size: int | None, layers: str | None, weights: Path | None, device: torch.device
) -> Backbone:
    """The backbone the options name, on ``device``."""
    default_size, default_layers = default_settings(name)
    return create_backbone(
        name,
        image_size=size or default_size,
        layers=int_list(layers, "--layers") if layers else default_layers,
        weights=weights,
    ).to(device)


def care_area(path: Path | None, image: Path) -> CareArea | None:
    """The ``--care-mask`` area (None: the whole image), its aspect checked against ``image``'s."""
    if path is None:
        return None
    try:
        care = CareArea.from_png(path)
        with Image.open(image) as opened:
            care.check_frame(opened.size)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--care-mask") from None
    return care


def tile_settings(grid: int, size: int, mode: str, overlap: float, halo: int, resolution: int) -> TileSettings:
    """Tile settings from the tile options, each checked with the option's name in the error."""
    options = {"grid": "--tiles", "tile_size": "--tile-size", "mode": "--tile-mode", "overlap": "--tile-overlap"}
    try:
        return TileSettings(grid, size, overlap, halo, mode, resolution)
    except SettingError as error:
        option = options.get(error.keys[0], f"--tile-{error.keys[0]}")
        raise typer.BadParameter(error.message, param_hint=option) from None


def musc_settings(r_list: str, topmin_max: float, topk_rounding: str, k_list: str) -> MuscSettings:
    """MuSc settings from the shared options, each checked with the option's name in the error."""
    if topk_rounding not in ("ceil", "floor"):
        raise typer.BadParameter("choose ceil or floor", param_hint="--topk-rounding")
    if not 0.0 < topmin_max <= 1.0:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--topmin-max")
    return MuscSettings(
        r_list=int_list(r_list, "--r-list"),
        topmin_max=topmin_max,
        topk_rounding=topk_rounding,  # type: ignore[arg-type]
        k_list=int_list(k_list, "--k-list"),
    )


def write_json(path: Path, report: dict) -> None:
    """Write a report as indented JSON, creating the folder, and say where on stderr."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    typer.echo(f"wrote {path}", err=True)
