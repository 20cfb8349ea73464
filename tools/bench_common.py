"""What the benchmark scripts share: the model options, the backbone they build, where they ran."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import open_clip
import torch

from musc_online.backbones import Backbone, create_backbone, default_settings
from musc_online.backbones.open_clip_vit import OpenClipViT


def cpu_name() -> str:
    """The processor's model name, for the record of where a figure was measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def random_open_clip_vit(model_name: str, image_size: int, layers: tuple[int, ...]) -> OpenClipViT:
    """A RANDOM-INIT open_clip ViT of the real architecture, for timing where no weights can be had."""
    model = open_clip.create_model(model_name, pretrained=None, force_image_size=image_size)
    return OpenClipViT(model.visual, f"{model_name} (random weights, timing only)", layers)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--backbone, --size, --random-weights, --r-list, --device, --threads and --json."""
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, help="input size in pixels (default: the backbone's)")
    parser.add_argument("--random-weights", action="store_true", help="random-init open_clip ViT (timing only)")
    parser.add_argument("--r-list", default="1,3,5", help="LNAMD degrees")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the figures here")


def model_from_arguments(args: argparse.Namespace) -> tuple[Backbone, torch.device, tuple[int, ...]]:
    """The backbone on its device, and the r list, as the model options ask."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    size, layers = default_settings(args.backbone)
    size = args.size or size
    if args.random_weights:
        backbone = random_open_clip_vit(args.backbone, size, layers)
    else:
        backbone = create_backbone(args.backbone, image_size=size)
    return backbone.to(device), device, tuple(int(r) for r in args.r_list.split(","))


def machine(device: torch.device) -> dict[str, object]:
    """Where a figure was measured: the GPU or CPU model, torch's threads and version."""
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def report(figures: dict, device: torch.device, path: Path | None) -> None:
    """Add the GPU's peak memory, print the figures as JSON and write them to ``path`` if given."""
    if device.type == "cuda":
        figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    text = json.dumps(figures, indent=2)
    print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
