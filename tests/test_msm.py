import numpy as np
import pytest
import torch

from musc_online.lnamd import lnamd
from musc_online.msm import interval_size, msm, nearest_similarity


def reference_msm(z: torch.Tensor, topmin_max: float, k: int) -> torch.Tensor:
    """A direct port of the authors' loop (cdist per image, min per reference, interval mean) as the oracle."""
    n, p, c = z.shape
    rows = []
    for i in range(n):
        others = torch.cat((z[:i], z[i + 1 :]))
        d = torch.cdist(z[i : i + 1].double(), others.reshape(-1, c).double()).reshape(p, n - 1, p)
        minima = d.min(dim=-1).values
        rows.append(minima.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.stack(rows).float()


@pytest.mark.parametrize("r", [1, 3, 5])
@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_matches_reference_msm_with_floor_rounding(golden, r, layer):
    z = torch.from_numpy(golden[f"lnamd_r{r}"][:, :, layer, :])
    ours = msm(z, float(golden["topmin_max"]), rounding="floor")
    np.testing.assert_allclose(ours.numpy(), golden[f"msm_r{r}_l{layer}"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("n", "grid", "c"), [(2, 3, 8), (5, 4, 16), (9, 5, 7)])
@pytest.mark.parametrize("rounding", ["ceil", "floor"])
def test_matches_direct_port_for_any_shape(n, grid, c, rounding):
    torch.manual_seed(n * grid + c)
    z = lnamd(torch.randn(n, c, grid, grid), 3)
    k = interval_size(n - 1, 0.3, rounding)
    # A one-image block forces many off-diagonal blocks, so both the row and column maxima are used.
    ours = msm(z, 0.3, rounding, block_elements=(grid * grid) ** 2)
    np.testing.assert_allclose(ours.numpy(), reference_msm(z, 0.3, k).numpy(), rtol=1e-5, atol=1e-6)
    assert not torch.isnan(ours).any()


def test_block_size_does_not_change_result():
    torch.manual_seed(0)
    z = lnamd(torch.randn(11, 12, 6, 6), 1)
    small = nearest_similarity(z, block_elements=36 * 36)
    large = nearest_similarity(z, block_elements=10**9)
    torch.testing.assert_close(small, large)
    assert torch.isinf(small.diagonal(dim1=0, dim2=1)).all()


@pytest.mark.parametrize(
    ("refs", "rounding", "expected"),
    [
        (11, "floor", 3),
        (11, "ceil", 4),
        (10, "ceil", 3),
        (10, "floor", 3),
        (3, "floor", 1),
        (3, "ceil", 1),
        (1, "ceil", 1),
    ],
)
def test_interval_size(refs, rounding, expected):
    assert interval_size(refs, 0.3, rounding) == expected


def test_interval_size_rejects_unknown_rounding():
    with pytest.raises(ValueError, match="ceil"):
        interval_size(10, 0.3, "round")


def test_single_image_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        msm(torch.randn(1, 4, 8), 0.3)


def test_defect_patch_scores_higher_than_normal_patches():
    torch.manual_seed(1)
    base = torch.randn(1, 8, 6, 6)
    images = base + 0.05 * torch.randn(10, 8, 6, 6)
    images[3, :, 2, 2] += 3.0 * torch.randn(8)  # one image carries an odd patch
    scores = msm(lnamd(images, 1), 0.3)
    assert scores[3].argmax().item() == 2 * 6 + 2
    assert scores[3].max() > 2 * scores[[0, 1, 2, 4]].max()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_half_precision_gpu_scores_match_float32_cpu():
    torch.manual_seed(2)
    z = lnamd(torch.randn(40, 64, 12, 12), 3)
    gpu = msm(z.cuda(), 0.3).cpu()
    cpu = msm(z, 0.3)
    assert (gpu - cpu).abs().max().item() < 1e-4
