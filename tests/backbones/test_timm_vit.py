"""timm ViT adapter (DINO, DINOv2), exercised through the tiny random ``test_random_timm_vit``."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import timm
import torch

from musc_online.backbones import WeightsNotFoundError, create_backbone
from musc_online.backbones.timm_vit import build_timm_vit

IMAGES = [np.full((50, 70, 3), 200, np.uint8), np.zeros((64, 90, 3), np.uint8)]


def test_patch_grids_channels_and_unit_image_features() -> None:
    output = create_backbone("test_random_timm_vit").extract(IMAGES)
    assert [tuple(f.shape) for f in output.patch_features] == [(2, 64, 8, 8)] * 3
    assert output.image_features.shape == (2, 64)
    torch.testing.assert_close(output.image_features.norm(dim=-1), torch.ones(2))


def test_patch_features_are_final_normed_block_outputs_and_image_feature_the_class_token() -> None:
    backbone = create_backbone("test_random_timm_vit", layers=(3, 6))
    model = backbone.model
    captured: list[torch.Tensor] = []
    hooks = [model.blocks[i].register_forward_hook(lambda _m, _i, out: captured.append(out)) for i in (2, 5)]
    output = backbone.extract(IMAGES)
    for hook in hooks:
        hook.remove()
    for tokens, grid in zip(captured, output.patch_features, strict=True):
        normed = model.norm(tokens)[:, model.num_prefix_tokens :]
        torch.testing.assert_close(grid, normed.reshape(2, 8, 8, 64).permute(0, 3, 1, 2))
    class_token = torch.nn.functional.normalize(model.norm(captured[-1])[:, 0], dim=-1)
    torch.testing.assert_close(output.image_features, class_token)


def test_checkpoint_loads_at_a_new_size(tmp_path: Path) -> None:
    source = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=64)  # 4 x 4 grid
    torch.save(source.state_dict(), tmp_path / "test_vit.pth")
    backbone = build_timm_vit("tiny", "test_vit", 128, (2, 6), tmp_path / "test_vit.pth")
    torch.testing.assert_close(backbone.model.blocks[0].mlp.fc1.weight, source.blocks[0].mlp.fc1.weight)
    output = backbone.eval().extract(IMAGES)
    assert [tuple(f.shape) for f in output.patch_features] == [(2, 64, 8, 8)] * 2


def test_dinov2_without_cached_weights_fails_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before its weights were found")

    monkeypatch.setattr(timm, "create_model", must_not_build)
    with pytest.raises(WeightsNotFoundError) as error:
        create_backbone("dinov2_vitb14")
    assert "timm/vit_base_patch14_dinov2.lvd142m" in str(error.value)
    assert "--weights" in str(error.value)
