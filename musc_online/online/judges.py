"""Seeding a scorer's judge bank with known-good images (a folder from the line, an operator's choice).

The seeds are scored against each other as one batch (batch MuSc, then RsCIN on the scorer's scale), so their
scores are comparable with frame scores and can calibrate the decision band. With ``judge_turns`` above 1 each
seed also joins the bank turned round the circle (``turns``). Preparing reads no scorer state: a running line
prepares without holding its scorer and only holds it to add the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from musc_online.batch import score_patches
from musc_online.online.calibration import Calibration
from musc_online.online.maps import frame_maps
from musc_online.online.scorer import OnlineScorer
from musc_online.online.turns import part_of, turn_angles, turn_image, turned_id
from musc_online.online.window import RollingWindow
from musc_online.tiling.batch import tiled_patch_maps
from musc_online.tiling.views import FrameViews


@dataclass(frozen=True)
class JudgeCandidate:
    """A good image's features and its score among the other seeds, ready to join the judge bank."""

    judge_id: str
    image_feature: torch.Tensor
    features: list[torch.Tensor]
    grids: list[tuple[int, int]]
    score: float
    seed: bool = True  # False for a turned copy: it judges, but its score is its seed's, no known-good score


def prepare_judges(
    scorer: OnlineScorer,
    images: Sequence[np.ndarray],
    ids: Sequence[str],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[JudgeCandidate]:
    """Features of known-good images and their mutual MuSc scores, then their turned copies (``judge_turns``;
    ``progress`` is told of each batch of images done, turns included)."""
    if len(images) != len(ids):
        raise ValueError(f"{len(images)} images but {len(ids)} ids")
    if not images:
        return []
    angles = turn_angles(scorer.settings.judge_turns)
    views, turned = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        views.extend(scorer.views.extract(batch, scorer.device))
        copies = [turn_image(image, angle) for image in batch for angle in angles]
        for first in range(0, len(copies), batch_size):
            turned.extend(scorer.views.extract(copies[first : first + batch_size], scorer.device))
        if progress:
            progress(len(batch))
    scores = _mutual_scores(scorer, views)
    candidates = [_candidate(scorer, view, i, score) for view, i, score in zip(views, ids, scores, strict=True)]
    copy_ids = [
        (turned_id(judge_id, angle), score) for judge_id, score in zip(ids, scores, strict=True) for angle in angles
    ]
    for view, (copy_id, score) in zip(turned, copy_ids, strict=True):
        candidates.append(_candidate(scorer, view, copy_id, score, seed=False))
    return candidates


def _candidate(
    scorer: OnlineScorer, view: FrameViews, judge_id: str, score: float, seed: bool = True
) -> JudgeCandidate:
    """A judge from its features: its scoring sets at the scorer's layers and tiles."""
    sets, grids = scorer.scoring_sets(view.layer_maps, view.tile_maps)
    return JudgeCandidate(judge_id, view.image_feature.float(), sets, grids, score, seed)


def add_judges(scorer: OnlineScorer, candidates: Iterable[JudgeCandidate]) -> int:
    """Add prepared judges to the bank; the seeds are parts known to be good, so their scores calibrate the bands:
    for the judges' own opinion each one's score against the other judges, for the combined one its score as a
    steady frame, which the scorer makes once its window is full (the mutual score stands in until then). Turned
    copies only judge. Returns how many seeds were added."""
    candidates = list(candidates)
    for candidate in candidates:
        scorer.ensure_banks(candidate.image_feature)
        scorer.judges.add(candidate.judge_id, candidate.image_feature, candidate.features, score=candidate.score)
    seeds = [candidate for candidate in candidates if candidate.seed]
    for candidate in seeds:
        judged = judges_opinion(
            scorer, candidate.features, candidate.grids, candidate.image_feature, candidate.judge_id
        )
        scorer.calibration.add_seed(candidate.judge_id, candidate.score, judged)
    return len(seeds)


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


def remove_judge(scorer: OnlineScorer, judge_id: str) -> None:
    """Take a judge and its turned copies out of the bank (it stays in the window if it votes there)."""
    if scorer.judges is None or judge_id not in scorer.judges:
        raise KeyError(f"no judge {judge_id!r} in the bank")
    for item in [item for item in scorer.judges.ids() if judge_id in (item, part_of(item))]:
        scorer.judges.remove(item)
    for correction in scorer.corrections.values():  # a confirmed-good frame no longer judging stops lifting
        if correction.frame_id == judge_id and correction.verdict == "ok":
            scorer.calibration.judge_thresholds.remove_label(correction.correction_id)


def change_product(scorer: OnlineScorer, images: Sequence[np.ndarray], ids: Sequence[str]) -> int:
    """A product changeover: the old product's judges, voters and calibration no longer apply. Seed the new
    product's good parts as judges and start an empty window and a fresh calibration: the bands calibrate from the
    new judges once the window is full again (see ``calibration``). Known defects stay (their look-alikes are still
    worth flagging). With no images the line starts over without judges, warming up on the new product. Returns
    how many judges were seeded."""
    candidates = prepare_judges(scorer, images, ids)
    scorer.judges = None
    scorer.window = RollingWindow(scorer.settings.window, scorer.device, scorer.dtype)
    scorer.calibration = Calibration(scorer.settings)
    return add_judges(scorer, candidates)


def _mutual_scores(scorer: OnlineScorer, views: Sequence[FrameViews]) -> list[float]:
    """Scores of seed judges against each other (batch MuSc, tiled as the scorer tiles, on frame scores' scale)."""
    count = len(views)
    if count < 2:
        return [0.0] * count
    musc = scorer.settings.musc
    maps = score_patches([torch.cat(parts).float() for parts in zip(*(v.layer_maps for v in views), strict=True)], musc)
    if scorer.views.layout is not None:
        tile_layers = [torch.stack(parts).float() for parts in zip(*(v.tile_maps for v in views), strict=True)]
        maps = tiled_patch_maps(maps, tile_layers, scorer.views.layout, musc, scorer.settings.tiles)
    scores = torch.tensor([scorer.image_score(patch_map) for patch_map in maps]).float()
    image_features = torch.stack([v.image_feature.float().cpu() for v in views])
    return [float(s) for s in scorer.rscin_rows(scores, image_features @ image_features.T, scores)]


def judges_opinion(
    scorer: OnlineScorer,
    sets: list[torch.Tensor],
    grids: list[tuple[int, int]],
    image_feature: torch.Tensor,
    exclude: str,
) -> float | None:
    """The judges' own opinion of an image that is itself a judge: its MSM score against the
    ``judges_per_frame`` judges most like it, itself and its turned copies left out (how a seed judge's known-good
    score is made)."""
    judge_ids = scorer.nearest_judges(image_feature, scorer.settings.judges_per_frame, exclude) if scorer.judges else []
    if not judge_ids:
        return None
    return scorer.image_score(frame_maps(scorer, sets, grids, judge_ids, [], voting=False).fused)
