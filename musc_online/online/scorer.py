"""Online MuSc: decide each frame as it arrives, against a rolling window of voters and chosen judges.

A frame x is scored one-sided exactly as batch MSM scores an image against the rest of its batch, with
the reference set R = the window's voters + the judges most like x (FAISS over image features). While
the window is young, judges fill it up. RsCIN then averages x's score with its nearest neighbours among
voters and judges, and the threshold band turns the score into ok / unsure / defect.

The scorer holds state and scores; operators' corrections act on it through ``corrections``, and ``persistence``
saves and restores it. It holds no sockets, files or database: the daemon and ``replay`` drive it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict

import numpy as np
import torch

from musc_online.backbones import Backbone
from musc_online.lnamd import lnamd
from musc_online.msm import compute_dtype
from musc_online.online.bank import FeatureBank
from musc_online.online.calibration import Calibration
from musc_online.online.decision import Decision, NearestDefect, combine_opinions
from musc_online.online.guard import nearest_known_defect
from musc_online.online.history import FrameHistory, FrameRecord
from musc_online.online.image_score import map_score, rescore, rscin_rows, to_host
from musc_online.online.maps import FrameMaps, frame_maps
from musc_online.online.settings import OnlineSettings
from musc_online.online.thresholds import ThresholdBand, ThresholdPolicy
from musc_online.online.turns import part_of
from musc_online.online.window import RollingWindow
from musc_online.roi import CareArea, care_only
from musc_online.tiling.scoring import tile_sets
from musc_online.tiling.views import FrameViews, ViewExtractor
from musc_online.timing import Stopwatch

SEEDS_PER_FRAME = 4  # pending seed judges scored per decided frame once they are due (30 seeds: 8 frames)


class OnlineScorer:
    """Per-frame MuSc with a rolling window, judge and known-defect banks, a threshold band and corrections."""

    def __init__(self, backbone: Backbone, settings: OnlineSettings = OnlineSettings(), device="cpu") -> None:
        self.backbone = backbone
        self.settings = settings
        self.device = torch.device(device)
        self.dtype = compute_dtype(self.device)
        self.window = RollingWindow(settings.window, self.device, self.dtype)
        self.views = ViewExtractor(backbone, settings.tiles)
        self.judges: FeatureBank | None = None
        self.defects: FeatureBank | None = None
        self.calibration = Calibration(settings)
        self.history = FrameHistory(settings.history)
        self.corrections: dict = {}  # correction id -> corrections.Correction, in the order they were made
        # final_flagged: final (not provisional) decisions unsure or defect, against the band's expectation
        self.counts = {"frames": 0, "ok": 0, "unsure": 0, "defect": 0, "provisional": 0, "final_flagged": 0}
        self.next_frame = 0
        self.grids: list[tuple[int, int]] = []  # the scoring sets' grids, known once a frame was scored
        self.care_area: CareArea | None = None  # only its pixels make the image score (see ``roi``)

    # ----------------------------------------------------------------------------------------- features
    @property
    def thresholds(self) -> ThresholdPolicy:
        """The combined opinion's band and the corrections that move it."""
        return self.calibration.thresholds

    @property
    def fingerprint(self) -> dict[str, object]:
        """What must match for features to be comparable (banks refuse imports that differ)."""
        return {
            "backbone": self.backbone.name,
            "image_size": self.backbone.image_size,
            "layers": list(self.backbone.layers),
            "r_list": list(self.settings.musc.r_list),
            **({"tiles": asdict(self.settings.tiles)} if self.settings.tiles.enabled else {}),
        }

    def scoring_sets(
        self, layer_maps: Sequence[torch.Tensor], tile_maps: Sequence[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """LNAMD features of one image for every (degree, layer), (P_s, C_s) each, with their grids; with tiles, as
        many tile sets follow in the same order, (T * P_s, C_s) each (``tiling.scoring``)."""
        sets, grids = [], []
        for r in self.settings.musc.r_list:
            for layer in layer_maps:
                sets.append(lnamd(layer.to(self.device), r)[0].to(self.dtype))
                grids.append(tuple(layer.shape[-2:]))
        for r in self.settings.musc.r_list if tile_maps is not None else ():
            sets.extend(tile_sets(layer.to(self.device), r).to(self.dtype) for layer in tile_maps)
        return sets, grids

    def ensure_banks(self, image_feature: torch.Tensor) -> None:
        """Create the judge and known-defect banks once the image-feature size is known."""
        if self.judges is None:
            dim = image_feature.numel()
            self.judges = FeatureBank(dim, device=self.device)
            self.defects = FeatureBank(dim, device="cpu")

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, image: np.ndarray, frame_id: str | None = None) -> Decision:
        """Decide one RGB uint8 frame (H, W, 3), then score the seed judges due after it (``score_due_seeds``)."""
        decision = self.score_many([image], [frame_id])[0]
        self.score_due_seeds(1)
        return decision

    def score_many(self, images: Sequence[np.ndarray], frame_ids: Sequence[str | None]) -> list[Decision]:
        """Decide a micro-batch: one backbone pass, then each frame in order (each sees the ones before it).

        Every frame id is checked before anything is scored, so a repeated id changes nothing. Seed judges are
        left to the caller (``score_due_seeds``): the daemon answers the frames first.
        """
        if len(images) != len(frame_ids):
            raise ValueError(f"{len(images)} images but {len(frame_ids)} frame ids")
        ids = self._claim_ids(frame_ids)
        watch = Stopwatch(self.device)
        views = self.views.extract(images, self.device)
        watch.mark("backbone")  # read once the frames are decided: on a GPU reading it then waits for nothing
        decisions = [
            self._decide(frame_id, view, image.shape[:2])
            for image, frame_id, view in zip(images, ids, views, strict=True)
        ]
        backbone_ms = 1e3 * watch.laps["backbone"] / len(images)
        for decision in decisions:
            decision.timings_ms = {"backbone": backbone_ms, **decision.timings_ms}
            decision.timings_ms["total"] += backbone_ms
        return decisions

    def score_features(
        self,
        frame_id: str | None,
        layer_maps: Sequence[torch.Tensor],
        image_feature: torch.Tensor,
        image_size: tuple[int, int],
        tile_maps: Sequence[torch.Tensor] | None = None,
    ) -> Decision:
        """Decide a frame from its backbone features: per-layer (1, C, H, W) maps, its image feature and, with tiles
        on, per-layer (T, C, H, W) tile maps (seed judges are left to the caller, as in ``score_many``)."""
        view = FrameViews(list(layer_maps), None if tile_maps is None else list(tile_maps), image_feature)
        return self._decide(self._claim_ids([frame_id])[0], view, image_size)

    def knows(self, frame_id: str) -> bool:
        """True when the scorer still holds the frame's features (recent, voting, a judge or a known defect)."""
        return (
            frame_id in self.history
            or frame_id in self.window
            or any(bank is not None and frame_id in bank for bank in (self.judges, self.defects))
        )

    def frame_record(self, image: np.ndarray, score: float, label: str) -> FrameRecord:
        """The features of a frame decided earlier, extracted afresh from its picture (the same pixels give the
        same features). Reads no scorer state: run it without holding the scorer, then remember it in ``history``."""
        view = self.views.extract([image], self.device)[0]
        sets, _ = self.scoring_sets(view.layer_maps, view.tile_maps)
        return FrameRecord(sets, view.image_feature.float().to(self.device), score, label)

    def _claim_ids(self, frame_ids: Sequence[str | None]) -> list[str]:
        """Final ids for a batch (None gets a numbered one); ValueError, changing nothing, for an id seen before."""
        ids = [f"frame-{self.next_frame + i:08d}" if f is None else f for i, f in enumerate(frame_ids)]
        seen: set[str] = set()
        for frame_id in ids:
            if frame_id in seen or frame_id in self.history or frame_id in self.window:
                raise ValueError(f"frame id {frame_id!r} was already scored")
            seen.add(frame_id)
        self.next_frame += len(ids)
        return ids

    def _pick_judges(self, image_feature: torch.Tensor, exclude: str | None = None) -> list[str]:
        """The judges most like this frame: ``judges_per_frame``, plus as many as the window lacks (never
        ``exclude`` or its turned copies: a judge scored as a frame does not judge itself)."""
        if self.judges is None or len(self.judges) == 0:
            return []
        wanted = self.settings.judges_per_frame + self.settings.window - len(self.window)
        if wanted <= 0:
            return []
        # A judge that also votes in the window (a re-admitted correction) must not count twice.
        return self.nearest_judges(image_feature, wanted, exclude, skip=self.window)

    def nearest_judges(
        self, image_feature: torch.Tensor, wanted: int, exclude: str | None = None, skip: Collection[str] = ()
    ) -> list[str]:
        """The ``wanted`` judges most like ``image_feature``, leaving out those in ``skip`` (at most ``len(skip)``
        of them) and ``exclude`` with its turned copies; the bank is searched with room for all of them."""
        found = self.judges.search(image_feature, wanted + len(skip) + self.settings.judge_turns)[0]
        return [judge_id for judge_id, _ in found if judge_id not in skip and part_of(judge_id) != exclude][:wanted]

    def steady_references(self) -> int:
        """|R| once warm: the full window plus ``judges_per_frame`` judges (as many as the bank can give)."""
        spare_judges = len(self.judges) - sum(j in self.window for j in self.judges.ids()) if self.judges else 0
        return self.settings.window + min(self.settings.judges_per_frame, spare_judges)

    def rscin_rows(self, own: torch.Tensor, similarity: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """RsCIN for query rows: ``similarity`` (Q, R) to references with ``scores`` (R,) (``image_score``)."""
        return rscin_rows(self.settings, own, similarity, scores)

    def _decide(
        self,
        frame_id: str,
        view: FrameViews,
        image_size: tuple[int, int],
    ) -> Decision:
        """Score, decide and (per the admission policy) admit one frame whose id was claimed. Everything stays on
        the scorer's device up to one copy of the scores and the map (``image_score.to_host``)."""
        watch = Stopwatch(self.device)
        image_feature = view.image_feature.reshape(-1).float().to(self.device)
        self.ensure_banks(image_feature)
        sets, grids = self.scoring_sets(view.layer_maps, view.tile_maps)
        watch.mark("lnamd")

        judge_ids = self._pick_judges(image_feature)
        voters = len(self.window)
        maps = self._msm(sets, grids, judge_ids, self._judge_rows(judge_ids))
        references = maps.references
        watch.mark("msm")

        size, care = self.backbone.image_size, self.care_area
        raw = map_score(maps.fused, size, care) if references else maps.fused.new_zeros(())
        judged = None if maps.fused_judges is None else map_score(maps.fused_judges, size, care)
        scores = [raw, rescore(self, raw, image_feature, judge_ids), judged]
        (raw, score, judge_score), patch_scores = to_host(scores, maps.fused)
        watch.mark("rscin")

        band = self.calibration.band()
        nearest = None
        if references and self.defects is not None and len(self.defects):  # its focus maps cost copies: only then
            nearest = nearest_known_defect(
                self.defects,
                self.settings.defect_match,
                image_feature,
                sets[: len(grids)],
                grids,
                maps.normal_best,
                (care_only(maps.patch_map, self.care_area), care_only(maps.judges_map, self.care_area)),
            )
        label, opinions = self._opinions(band.decide(score), judge_score, nearest)
        steady = references >= self.steady_references()
        provisional = not steady or not self.thresholds.calibrated
        admitted = self._admit(frame_id, sets, image_feature, score, label, band, steady)
        self.history.remember(frame_id, FrameRecord(sets, image_feature, score, label, judge_score))
        self.grids = grids
        self.counts["frames"] += 1
        self.counts[label] += 1
        self.counts["provisional"] += int(provisional)
        self.counts["final_flagged"] += int(not provisional and label != "ok")
        watch.mark("decide")
        timings = {name: 1e3 * seconds for name, seconds in watch.laps.items()}
        timings["total"] = sum(timings.values())
        return Decision(
            frame_id=frame_id,
            score=score,
            raw_score=raw,
            label=label,
            band=band,
            provisional=provisional,
            patch_scores=patch_scores,
            image_size=tuple(int(v) for v in image_size),
            references={"voters": voters, "judges": len(judge_ids)},
            nearest_defect=nearest,
            admitted=admitted,
            timings_ms=timings,
            judge_score=judge_score,
            opinions=opinions,
        )

    def image_score(self, patch_map: torch.Tensor) -> float:
        """An image's score: the maximum of its patch map upsampled to the input size (or to the stitched map's own
        size where tiles make it larger), over the care area if any."""
        return float(map_score(patch_map, self.backbone.image_size, self.care_area))

    def score_due_seeds(self, frames: int, limit: int | None = None) -> int:
        """Score the seed judges due after ``frames`` more decided frames (``Calibration.seeds_due``):
        ``SEEDS_PER_FRAME`` per frame, or at most ``limit``. Returns how many were scored."""
        if not self.grids or not self.calibration.seeds_due(frames, self.window.full):
            return 0
        count = min(len(self.calibration.pending), SEEDS_PER_FRAME * frames if limit is None else limit)
        self._score_seeds(count)
        return count

    def _score_seeds(self, count: int | None = None) -> None:
        """Score ``count`` (default all) pending seed judges as a steady frame is scored: against the window's
        voters and the judges most like it, itself left out, then RsCIN. Their scores calibrate the combined band
        (see ``calibration``)."""
        for judge_id in self.calibration.pending[:count]:
            if self.judges is None or judge_id not in self.judges or judge_id in self.window:
                self.calibration.add_steady(judge_id, None)
                continue
            image_feature = self.judges.image_features([judge_id])[0].to(self.device)
            sets = [features[0].to(self.device, self.dtype) for features in self.judges.patch_features([judge_id])]
            judge_ids = self._pick_judges(image_feature, exclude=judge_id)
            raw = self.image_score(self._msm(sets, self.grids, judge_ids, []).fused)
            self.calibration.add_steady(judge_id, self.rescore(raw, image_feature, judge_ids))

    def _judge_rows(self, judge_ids: list[str]) -> list[int]:
        """Rows of the reference set that are judges: voters that are also judges (confirmed good), then the
        judges picked for this frame. The judges' own opinion is the frame against these rows alone."""
        voting = self.window.block_rows(self.judges) if self.judges else []
        return voting + list(range(len(self.window), len(self.window) + len(judge_ids)))

    def _msm(
        self, sets: list[torch.Tensor], grids: list[tuple[int, int]], judge_ids: list[str], judge_rows: list[int]
    ) -> FrameMaps:
        """The frame's maps against all its references and against the ``judge_rows`` alone (``online.maps``)."""
        return frame_maps(self, sets, grids, judge_ids, judge_rows)

    def rescore(self, raw: float, image_feature: torch.Tensor, judge_ids: Sequence[str] = ()) -> float:
        """Online RsCIN of one frame's raw score over itself, the window's voters and the given judges."""
        return float(rescore(self, raw, image_feature, judge_ids))

    # ------------------------------------------------------------------------------------- band, window
    def _opinions(
        self, combined: str, judge_score: float | None, nearest: NearestDefect | None
    ) -> tuple[str, dict[str, str | None]]:
        """The label and what said what (see ``decision.combine_opinions``; ``anchor``, ``defect_guard``)."""
        judge_band = self.calibration.judge_band()
        judged = None if judge_score is None or judge_band.source == "unset" else judge_band.decide(judge_score)
        guarded = nearest.label or nearest.frame_id if nearest is not None and self.settings.defect_guard else None
        return combine_opinions(combined, judged, guarded, self.settings.anchor)

    def _admit(
        self,
        frame_id: str,
        sets: list[torch.Tensor],
        image_feature: torch.Tensor,
        score: float,
        label: str,
        band: ThresholdBand,
        steady: bool,
    ) -> bool:
        """Let the frame vote per the admission policy; with no band yet, every frame votes (warm-up).

        Only a frame scored against the full reference set counts towards calibration: with fewer references
        the interval mean reaches nearer neighbours, so young-window scores run low and a band set from them
        would call most steady frames defective.
        """
        if self.settings.admission == "ok" and band.source != "unset" and label != "ok":
            return False
        self.admit_to_window(frame_id, sets, image_feature, score)
        if steady:
            self.calibration.add_admitted(score)
        return True

    def admit_to_window(
        self, frame_id: str, sets: list[torch.Tensor], image_feature: torch.Tensor, score: float
    ) -> None:
        """Admit a voter; an ok correction stops lifting the band once its frame is pushed out (see thresholds)."""
        pushed_out = self.window.admit(frame_id, sets, image_feature, score)
        if pushed_out is not None:
            for correction in self.corrections.values():
                if correction.frame_id == pushed_out and correction.verdict == "ok" and not correction.undone:
                    self.calibration.remove_label(correction.correction_id)  # both bands: while it votes

    def set_band(self, low: float, high: float) -> ThresholdBand:
        """Set the decision band by hand (corrections still adjust it)."""
        return self.thresholds.set_band(low, high)

    def recalibrate(self) -> ThresholdBand:
        """Calibrate the bands again from the known-good scores (e.g. once operators confirmed more good parts; see
        ``calibration``); seed judges still pending are scored first when the window is full."""
        if self.calibration.pending and self.window.full and self.grids:
            self._score_seeds()
        return self.calibration.recalibrate([float(s) for s in self.window.voter_scores()])

    # ---------------------------------------------------------------------------------------- counters
    def stats(self) -> dict[str, object]:
        """Counters and state for status displays and metrics."""
        band = self.calibration.band()
        judge_band = self.calibration.judge_band()
        final = self.counts["frames"] - self.counts["provisional"]
        return {
            **self.counts,
            "window": len(self.window),
            "window_capacity": self.window.capacity,
            "judges": len(self.judges) if self.judges else 0,  # bank items: each part and its turned copies
            "judge_parts": len({part_of(judge_id) for judge_id in self.judges.ids()}) if self.judges else 0,
            "known_defects": len(self.defects) if self.defects else 0,
            "band": {"low": band.low, "high": band.high, "source": band.source},
            "judge_band": {"low": judge_band.low, "high": judge_band.high, "source": judge_band.source},
            "expected_per_1000": self.calibration.expected_per_1000(),
            # what the line flags, good parts and defects alike: far above the expected flagged rate at a low
            # defect rate, the judges do not cover today's parts (docs/online.md, "The decision bands")
            "flagged_per_1000_final": 1e3 * self.counts["final_flagged"] / final if final else None,
            "corrections": sum(not c.undone for c in self.corrections.values()),
            "corrections_moving_band": self.thresholds.moved_by,
        }
