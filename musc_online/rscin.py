"""RsCIN: Re-scoring with Constrained Image-level Neighbourhood (MuSc, section 3.4).

An image's score is replaced by the average score of its k most similar images (itself included),
weighted by image-level feature similarity, and averaged over several k. Similar-looking normal images
then pull an isolated false alarm down, while a real defect keeps its score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def min_max_normalise(scores: torch.Tensor) -> torch.Tensor:
    """Scale scores to [0, 1] over the set, as the reference does before re-scoring."""
    low, high = scores.min(), scores.max()
    return (scores - low) / (high - low)


def neighbourhood_average(similarity: torch.Tensor, scores: torch.Tensor, k_list: Sequence[int]) -> torch.Tensor:
    """For each row of ``similarity`` (Q, R), average the ``scores`` (R,) of its k most similar columns.

    Weights are the similarities themselves, row-normalised over the kept k; the result is averaged
    over every k in ``k_list`` (the reference's multi-window mutual optimisation, MMO).
    """
    similarity = similarity.float()
    scores = scores.float()
    out = torch.zeros(similarity.shape[0], dtype=torch.float32, device=similarity.device)
    for k in k_list:
        k_eff = min(int(k), similarity.shape[1])
        values, index = similarity.topk(k_eff, dim=1)
        out += (values * scores[index]).sum(dim=1) / values.sum(dim=1)
    return out / len(k_list)


def rscin(scores: torch.Tensor, image_features: torch.Tensor, k_list: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
    """Re-score a batch: min-max normalise, then average over image-feature neighbourhoods.

    ``k_list`` containing 0 disables re-scoring and returns the scores unchanged, as in the reference.
    """
    if 0 in k_list:
        return scores
    features = image_features.float()
    return neighbourhood_average(features @ features.T, min_max_normalise(scores.float()), k_list)
