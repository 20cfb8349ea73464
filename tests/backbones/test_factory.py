"""The factory: registry, defaults, frozen modules, and the shared preprocessing every adapter uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musc_online.backbones import (
    WeightsNotFoundError,
    available_backbones,
    create_backbone,
    default_settings,
)

FAST_BACKBONES = ["test_random_vit", "test_random_timm_vit", "efficientnet_lite0"]


def test_registry_lists_the_paper_backbone_and_the_test_models() -> None:
    names = available_backbones()
    assert names == sorted(names)
    assert {"ViT-L-14-336", "efficientnet_lite0", "test_random_vit", "test_random_timm_vit"} <= set(names)


def test_defaults_follow_the_paper() -> None:
    assert default_settings("ViT-L-14-336") == (518, (6, 12, 18, 24))
    assert default_settings("efficientnet_lite0") == (320, (2, 3, 4))


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'nope'.*ViT-L-14-336"):
        create_backbone("nope")
    with pytest.raises(ValueError, match="unknown backbone"):
        default_settings("nope")


@pytest.mark.parametrize("name", FAST_BACKBONES)
def test_backbone_is_frozen_and_uses_defaults(name: str) -> None:
    backbone = create_backbone(name)
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())
    assert (backbone.image_size, backbone.layers) == default_settings(name)
    assert backbone.name == name


@pytest.mark.parametrize("name", ["test_random_vit", "test_random_timm_vit"])
def test_random_test_models_take_no_weights(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="random-init for tests only"):
        create_backbone(name, weights=tmp_path / "w.pt")


@pytest.mark.parametrize("layers", [(), (0, 1), (2, 1), (1, 1), (1, 99)])
def test_bad_layers_are_rejected(layers: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="layers must be increasing"):
        create_backbone("test_random_vit", layers=layers)


@pytest.mark.parametrize("name", ["ViT-L-14-336", "dinov2_vitb14", "efficientnet_lite0"])
def test_missing_explicit_weights_file_is_named(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(WeightsNotFoundError, match=str(missing)):
        create_backbone(name, weights=missing)


@pytest.mark.parametrize("name", FAST_BACKBONES)
def test_preprocess_accepts_any_size_and_outputs_square_batches(name: str) -> None:
    backbone = create_backbone(name)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in [(37, 91, 3), (300, 200, 3)]]
    pixels = backbone.preprocess(images)
    assert pixels.shape == (2, 3, backbone.image_size, backbone.image_size)
    assert pixels.dtype == torch.float32
    output = backbone.extract(images)
    assert [f.shape[0] for f in output.patch_features] == [2] * len(backbone.layers)
    torch.testing.assert_close(output.image_features.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8), np.uint8), r"shape \(H, W, 3\).*grayscale"),
        (np.zeros((8, 8, 4), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.float32), "dtype uint8"),
        (torch.zeros(8, 8, 3, dtype=torch.uint8), "numpy array"),
    ],
)
def test_preprocess_rejects_non_rgb_uint8(image: object, message: str) -> None:
    backbone = create_backbone("test_random_vit")
    with pytest.raises(ValueError, match=message):
        backbone.preprocess([np.zeros((8, 8, 3), np.uint8), image])


def test_preprocess_rejects_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        create_backbone("test_random_vit").preprocess([])
