import numpy as np
import pytest
import torch

from musc_online.batch import assemble_scores, finest_grid, score_batch, score_patches, upsample
from musc_online.lnamd import lnamd
from musc_online.msm import msm
from musc_online.settings import MuscSettings


def _golden_layer_maps(golden) -> list[torch.Tensor]:
    tokens = torch.from_numpy(golden["tokens"])
    _, n, t, c = tokens.shape
    g = round((t - 1) ** 0.5)
    return [layer[:, 1:, :].reshape(n, g, g, c).permute(0, 3, 1, 2) for layer in tokens]


def test_batch_scores_match_reference(golden):
    settings = MuscSettings(topk_rounding="floor", k_list=tuple(int(k) for k in golden["k_list"]))
    scores = score_batch(_golden_layer_maps(golden), torch.from_numpy(golden["cls"]), 56, settings)
    n = golden["gt_sp"].shape[0]
    np.testing.assert_allclose(scores.patch_maps.reshape(n, -1).numpy(), golden["anomaly_map"], rtol=1e-4)
    np.testing.assert_allclose(scores.anomaly_maps.numpy(), golden["anomaly_map_upsampled"][:, 0], rtol=1e-4)
    np.testing.assert_allclose(scores.image_scores.numpy(), golden["image_score"], rtol=1e-4)
    np.testing.assert_allclose(scores.rscin_scores.numpy(), golden["rscin"], rtol=1e-4, atol=1e-6)


def test_layers_of_different_grids_are_upsampled_to_the_finest_before_averaging():
    torch.manual_seed(0)
    fine, coarse = torch.randn(6, 8, 8, 8), torch.randn(6, 16, 4, 4)
    settings = MuscSettings(r_list=(1,))
    expected = (
        msm(lnamd(fine, 1), 0.3).view(6, 8, 8).double()
        + upsample(msm(lnamd(coarse, 1), 0.3).view(6, 4, 4).double(), (8, 8))
    ) / 2
    torch.testing.assert_close(score_patches([fine, coarse], settings), expected)
    assert finest_grid([coarse, fine]) == (8, 8)


def test_upsampling_keeps_corner_values_and_image_score_is_map_maximum():
    patch_maps = torch.rand(3, 5, 5, dtype=torch.float64)
    scores = assemble_scores(patch_maps, torch.eye(3), 17, k_list=(1,))
    assert scores.anomaly_maps.shape == (3, 17, 17)
    torch.testing.assert_close(scores.anomaly_maps[:, 0, 0], patch_maps[:, 0, 0])
    torch.testing.assert_close(scores.anomaly_maps[:, -1, -1], patch_maps[:, -1, -1])
    torch.testing.assert_close(scores.image_scores, scores.anomaly_maps.flatten(1).amax(dim=1))


def test_small_sets_give_finite_scores_with_ceil_rounding():
    scores = score_batch([torch.randn(3, 8, 4, 4)], torch.nn.functional.normalize(torch.randn(3, 5), dim=1), 16)
    assert torch.isfinite(scores.patch_maps).all()
    assert torch.isfinite(scores.rscin_scores).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batch_matches_cpu_batch():
    torch.manual_seed(1)
    maps = [torch.randn(24, 32, 10, 10), torch.randn(24, 48, 5, 5)]
    cpu = score_patches(maps)
    gpu = score_patches([m.cuda().half() for m in maps])
    assert (gpu - cpu).abs().max().item() < 1e-4
