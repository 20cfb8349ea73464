"""Seeding a scorer's judge bank with known-good images (a folder from the line, an operator's choice).

The seeds are scored against each other as one batch (batch MuSc, then RsCIN on the scorer's scale), so their
scores are comparable with frame scores and can calibrate the decision band. Preparing reads no scorer state:
a running line prepares without holding its scorer and only holds it to add the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from musc_online.batch import score_batch
from musc_online.online.scorer import OnlineScorer


@dataclass(frozen=True)
class JudgeCandidate:
    """A good image's features and its score among the other seeds, ready to join the judge bank."""

    judge_id: str
    image_feature: torch.Tensor
    features: list[torch.Tensor]
    score: float


def prepare_judges(
    scorer: OnlineScorer,
    images: Sequence[np.ndarray],
    ids: Sequence[str],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[JudgeCandidate]:
    """Features of known-good images and their mutual MuSc scores (``progress`` is told of each batch done)."""
    if len(images) != len(ids):
        raise ValueError(f"{len(images)} images but {len(ids)} ids")
    if not images:
        return []
    layer_batches, feature_batches = [], []
    for start in range(0, len(images), batch_size):
        out = scorer.backbone.extract(list(images[start : start + batch_size]), scorer.device)
        layer_batches.append([m.float() for m in out.patch_features])
        feature_batches.append(out.image_features.float())
        if progress:
            progress(len(out.image_features))
    layer_maps = [torch.cat(parts) for parts in zip(*layer_batches, strict=True)]
    image_features = torch.cat(feature_batches)
    scores = _mutual_scores(scorer, layer_maps, image_features)
    return [
        JudgeCandidate(judge_id, image_features[i], scorer.scoring_sets([m[i : i + 1] for m in layer_maps])[0], score)
        for i, (judge_id, score) in enumerate(zip(ids, scores, strict=True))
    ]


def add_judges(scorer: OnlineScorer, candidates: Iterable[JudgeCandidate]) -> int:
    """Add prepared judges to the bank; their scores count as normal scores for calibrating the band."""
    added = 0
    for candidate in candidates:
        scorer.ensure_banks(candidate.image_feature)
        scorer.judges.add(candidate.judge_id, candidate.image_feature, candidate.features, score=candidate.score)
        scorer.normal_scores.append(candidate.score)
        added += 1
    scorer.update_calibration()
    return added


def seed_judges(
    scorer: OnlineScorer,
    images: Sequence[np.ndarray],
    ids: Sequence[str],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Prepare and add known-good images as judges at once; returns how many were added.

    All seeds are scored against each other as one batch, so pass them together.
    """
    return add_judges(scorer, prepare_judges(scorer, images, ids, batch_size, progress))


def _mutual_scores(scorer: OnlineScorer, layer_maps: list[torch.Tensor], image_features: torch.Tensor) -> list[float]:
    """Scores of seed judges against each other (batch MuSc, same scale as frame scores)."""
    count = image_features.shape[0]
    if count < 2:
        return [0.0] * count
    batch = score_batch(layer_maps, image_features, scorer.backbone.image_size, scorer.settings.musc)
    similarity = image_features.cpu() @ image_features.cpu().T
    rescored = scorer.rscin_rows(batch.image_scores.float(), similarity, batch.image_scores.float())
    return [float(s) for s in rescored]
