"""open_clip ViT adapter, exercised through the tiny random ``test_random_vit`` (never the 300M ViT-L)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import torch

from musc_online.backbones import WeightsNotFoundError, create_backbone
from musc_online.backbones.open_clip_vit import load_visual_weights, resize_position_embedding

IMAGES = [np.full((50, 70, 3), 128, np.uint8), np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)]


def test_patch_grids_channels_and_unit_image_features() -> None:
    backbone = create_backbone("test_random_vit")
    output = backbone.extract(IMAGES)
    assert [tuple(f.shape) for f in output.patch_features] == [(2, 64, 8, 8)] * 4
    assert output.image_features.shape == (2, 32)
    torch.testing.assert_close(output.image_features.norm(dim=-1), torch.ones(2))


def test_grid_follows_image_size() -> None:
    output = create_backbone("test_random_vit", image_size=96, layers=(2, 4)).extract(IMAGES)
    assert [tuple(f.shape) for f in output.patch_features] == [(2, 64, 12, 12)] * 2


def test_patch_features_are_raw_block_outputs_without_class_token() -> None:
    backbone = create_backbone("test_random_vit", layers=(1, 3))
    captured: list[torch.Tensor] = []
    blocks = backbone.visual.transformer.resblocks
    hooks = [blocks[i].register_forward_hook(lambda _m, _i, out: captured.append(out)) for i in (0, 2)]
    output = backbone.extract(IMAGES)
    for hook in hooks:
        hook.remove()
    for tokens, grid in zip(captured, output.patch_features, strict=True):
        expected = tokens[:, 1:].reshape(2, 8, 8, 64).permute(0, 3, 1, 2)  # batch-first blocks
        torch.testing.assert_close(grid, expected)


def test_image_features_are_the_normalised_pooled_projection() -> None:
    backbone = create_backbone("test_random_vit")
    pixels = backbone.preprocess(IMAGES)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(backbone.visual(pixels), dim=-1)
        torch.testing.assert_close(backbone(pixels).image_features, expected)


def test_preprocess_uses_openai_mean_and_std() -> None:
    mean = np.array(open_clip.constants.OPENAI_DATASET_MEAN)
    image = np.broadcast_to(np.round(mean * 255).astype(np.uint8), (10, 13, 3)).copy()
    pixels = create_backbone("test_random_vit").preprocess([image])
    assert pixels.abs().max() < 0.01


def test_position_embedding_resize_grid_and_class_token() -> None:
    position = torch.randn(1 + 24 * 24, 16)
    resized = resize_position_embedding(position, 37)
    assert resized.shape == (1 + 37 * 37, 16)
    torch.testing.assert_close(resized[0], position[0])
    assert resize_position_embedding(position, 24) is position
    # A constant embedding stays constant under bicubic resizing.
    constant = torch.ones(1 + 4 * 4, 3)
    torch.testing.assert_close(resize_position_embedding(constant, 7), torch.ones(1 + 7 * 7, 3))
    with pytest.raises(ValueError, match="not a square grid"):
        resize_position_embedding(torch.zeros(1 + 10, 3), 5)


def test_clip_checkpoint_loads_into_a_larger_grid() -> None:
    source = create_backbone("test_random_vit").visual  # 8 x 8 grid
    checkpoint = {f"visual.{key}": value for key, value in source.state_dict().items()}
    checkpoint["text_projection"] = torch.zeros(1)  # text-tower keys are ignored
    target = create_backbone("test_random_vit", image_size=96).visual  # 12 x 12 grid
    torch.nn.init.zeros_(target.proj)
    load_visual_weights(target, checkpoint)
    torch.testing.assert_close(target.proj, source.proj)
    torch.testing.assert_close(target.positional_embedding, resize_position_embedding(source.positional_embedding, 12))
    with pytest.raises(ValueError, match="no CLIP image tower"):
        load_visual_weights(target, {"text_projection": torch.zeros(1)})


def test_vit_l_without_cached_weights_fails_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the 300M-parameter model was built before its weights were found")

    monkeypatch.setattr(open_clip, "create_model", must_not_build)
    with pytest.raises(WeightsNotFoundError) as error:
        create_backbone("ViT-L-14-336")
    message = str(error.value)
    for part in ("ViT-L-14-336", "--weights", "timm/vit_large_patch14_clip_336.openai", "open_clip"):
        assert part in message
