"""The weights table: one source per registered backbone, agreeing with where open_clip and timm keep them."""

from __future__ import annotations

import open_clip
import pytest
import timm

from musc_online.backbones import _REGISTRY, available_backbones, canonical_backbone
from musc_online.backbones.weights_sources import SOURCES, HubSource, WeightsError, weights_source


def test_every_backbone_with_pretrained_weights_has_a_source():
    pretrained = {name for name in available_backbones() if not _REGISTRY[name].random_weights}
    assert {name for name, source in SOURCES.items() if not source.test_only} == pretrained


@pytest.mark.parametrize("name", ["ViT-L-14-336", "dino_vitb8", "dinov2_vitb14", "dinov2_vitl14"])
def test_hub_sources_are_where_the_loader_looks(name):
    entry, origin = _REGISTRY[name], SOURCES[name].origin
    assert isinstance(origin, HubSource)
    if entry.builder.startswith("open_clip_vit"):
        repo = open_clip.get_pretrained_cfg(*entry.arguments[1:])["hf_hub"].rstrip("/")
        from musc_online.backbones.open_clip_vit import OPEN_CLIP_HUB_FILES as files
    else:
        repo = timm.models.get_pretrained_cfg(entry.arguments[1]).hf_hub_id
        from musc_online.backbones.timm_vit import TIMM_HUB_FILES as files
    assert (origin.repo_id, origin.filenames) == (repo, files)


def test_old_names_resolve_and_unknown_ones_are_refused():
    assert canonical_backbone("ViT-L/14@336px") == "ViT-L-14-336"
    assert weights_source("efficientnet-lite0").name == "efficientnet_lite0"
    with pytest.raises(ValueError, match="unknown backbone 'resnet_9000'"):
        canonical_backbone("resnet_9000")
    with pytest.raises(WeightsError, match="no pretrained weights are known for 'test_random_vit'"):
        weights_source("test_random_vit")
