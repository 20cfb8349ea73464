import numpy as np
import pytest
import torch

from musc_online.lnamd import lnamd


def _tokens_to_map(tokens: np.ndarray) -> torch.Tensor:
    """Golden layout (N, 1+P, C) with the class token first -> (N, C, H, W)."""
    n, t, c = tokens.shape
    g = round((t - 1) ** 0.5)
    return torch.from_numpy(tokens[:, 1:, :]).reshape(n, g, g, c).permute(0, 3, 1, 2)


@pytest.mark.parametrize("r", [1, 3, 5])
def test_matches_reference_lnamd(golden, r):
    ours = torch.stack([lnamd(_tokens_to_map(layer), r) for layer in golden["tokens"]], dim=2)
    np.testing.assert_allclose(ours.numpy(), golden[f"lnamd_r{r}"], atol=1e-6, rtol=1e-4)


def test_border_patches_count_zero_padding():
    # A constant map LayerNorms to zeros, so add a ramp and check the corner mean against a hand sum.
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    normed = torch.nn.functional.layer_norm(x, x.shape[1:])
    corner = normed[0, :, :2, :2].sum(dim=(1, 2)) / 9.0  # 4 real neighbours, 5 zero pads
    expected = torch.nn.functional.normalize(corner, dim=0)
    np.testing.assert_allclose(lnamd(x, 3)[0, 0].numpy(), expected.numpy(), atol=1e-6)


def test_outputs_unit_vectors_per_patch():
    out = lnamd(torch.randn(3, 16, 6, 6), 5)
    assert out.shape == (3, 36, 16)
    np.testing.assert_allclose(out.norm(dim=-1).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("r", [0, 2, -1])
def test_rejects_even_or_non_positive_degree(r):
    with pytest.raises(ValueError, match="odd"):
        lnamd(torch.randn(1, 4, 3, 3), r)
