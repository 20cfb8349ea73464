"""Offline weight resolution: explicit files, the local Hugging Face cache, and checkpoint formats."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file

from musc_online.backbones import WeightsNotFoundError
from musc_online.backbones.weights import (
    HubWeights,
    cached_hub_file,
    explicit_weights_file,
    packaged_efficientnet_lite0_file,
    read_state_dict,
)

HUB = HubWeights("someorg/some-model", ("model.safetensors", "pytorch_model.bin"))


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face cache at an empty folder (the constant is read at import, so patch it)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_explicit_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match=str(missing)):
        explicit_weights_file(missing)
    missing.write_bytes(b"")
    assert explicit_weights_file(str(missing)) == missing


def test_empty_cache_says_how_to_supply_the_weights(empty_hub_cache: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as error:
        cached_hub_file("my-backbone", HUB)
    message = str(error.value)
    for part in ("'my-backbone'", "--weights", "someorg/some-model", "model.safetensors", str(empty_hub_cache)):
        assert part in message
    assert "musc-online weights fetch my-backbone" in message and "musc-online weights import" in message


def test_cached_file_is_found_without_network(empty_hub_cache: Path) -> None:
    # The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/<file>}.
    repo = empty_hub_cache / "models--someorg--some-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(b"")
    assert cached_hub_file("my-backbone", HUB) == snapshot / "pytorch_model.bin"


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript: OpenAI's original CLIP files
def test_read_state_dict_reads_all_three_formats(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 3)
    expected = module.state_dict()
    save_file(dict(expected), tmp_path / "w.safetensors")
    torch.save(expected, tmp_path / "w.pth")
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, 2)), tmp_path / "w_jit.pt")
    for name in ("w.safetensors", "w.pth", "w_jit.pt"):
        loaded = read_state_dict(tmp_path / name)
        assert loaded.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(loaded[key], value)


def test_efficientnet_package_ships_its_checkpoint() -> None:
    assert packaged_efficientnet_lite0_file().stat().st_size > 1_000_000
