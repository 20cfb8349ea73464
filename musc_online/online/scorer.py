"""Online MuSc: decide each frame as it arrives, against a rolling window of voters and chosen judges.

A frame x is scored one-sided exactly as batch MSM scores an image against the rest of its batch, with
the reference set R = the window's voters + the judges most like x (FAISS over image features). While
the window is young, judges fill it up. RsCIN then averages x's score with its nearest neighbours among
voters and judges, and the threshold band turns the score into ok / unsure / defect.

Operators' corrections feed back at once: a frame confirmed good becomes a judge (and votes again), one
confirmed defective stops voting and joins the known-defect bank that names look-alikes. Every
correction can be undone. The scorer holds no sockets, files or database: the daemon and ``replay``
drive it, and ``save``/``load`` persist its state.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from musc_online.backbones import Backbone
from musc_online.batch import MuscSettings, score_batch, upsample
from musc_online.lnamd import lnamd
from musc_online.msm import compute_dtype, distances_from_similarity, interval_mean, interval_size, query_similarity
from musc_online.online.bank import FEATURES_FILE, INDEX_FILE, META_FILE, FeatureBank
from musc_online.online.thresholds import ThresholdBand, ThresholdPolicy, ThresholdSettings, calibrate
from musc_online.online.window import RollingWindow
from musc_online.rscin import min_max_normalise, neighbourhood_average

ADMISSION_POLICIES = ("ok", "all")
JUDGE_EXPORT_FILES = {INDEX_FILE, FEATURES_FILE, META_FILE}
NORMALISATIONS = ("none", "minmax")


@dataclass(frozen=True)
class OnlineSettings:
    """Knobs of the online scorer; ``musc`` holds the method's own (degrees, interval, RsCIN windows)."""

    window: int = 64  # W: admitted frames that vote
    judges_per_frame: int = 16  # judges added to each frame's references once the window is full
    admission: str = "ok"  # "ok": only frames decided ok vote; "all": every frame votes (the paper)
    rscin_normalisation: str = "none"  # "none": scores keep their scale; "minmax": the reference's, per frame
    history: int = 64  # recent frames whose features are kept for corrections
    calibration_scores: int = 32  # normal scores after which the band is calibrated and frozen
    defect_match: float = 0.9  # image-feature similarity above which a known defect is named
    musc: MuscSettings = field(default_factory=MuscSettings)
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be at least 1 frame, got {self.window}")
        if self.judges_per_frame < 0:
            raise ValueError(f"judges_per_frame must be >= 0, got {self.judges_per_frame}")
        if self.admission not in ADMISSION_POLICIES:
            raise ValueError(f"admission must be one of {ADMISSION_POLICIES}, got {self.admission!r}")
        if self.rscin_normalisation not in NORMALISATIONS:
            raise ValueError(f"rscin_normalisation must be one of {NORMALISATIONS}, got {self.rscin_normalisation!r}")
        if self.history < 0 or self.calibration_scores < self.thresholds.min_scores:
            raise ValueError("history must be >= 0 and calibration_scores >= thresholds.min_scores")
        if not -1.0 <= self.defect_match <= 1.0:
            raise ValueError(f"defect_match is a cosine similarity in [-1, 1], got {self.defect_match}")


@dataclass(frozen=True)
class NearestDefect:
    """The confirmed defect a frame looks most like, when it is close enough to name."""

    frame_id: str
    label: str | None
    similarity: float


@dataclass
class Decision:
    """What the scorer says about one frame."""

    frame_id: str
    score: float  # final image score (after RsCIN), what the band judges
    raw_score: float  # maximum of the anomaly map, before RsCIN
    label: str  # ok | unsure | defect
    band: ThresholdBand
    provisional: bool  # the window was not yet full or the band not yet calibrated
    patch_scores: np.ndarray  # (H, W) float32 on the finest patch grid
    image_size: tuple[int, int]  # (height, width) of the frame as received
    references: dict[str, int]  # voters and judges this frame was scored against
    nearest_defect: NearestDefect | None
    admitted: bool
    timings_ms: dict[str, float]

    def heatmap(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """Anomaly map at the frame's size (or ``size``), bilinear with align_corners=True like the batch maps."""
        target = size or self.image_size
        grid = torch.from_numpy(self.patch_scores.astype(np.float32))[None]
        return upsample(grid, target)[0].numpy()


@dataclass
class FrameRecord:
    """A recent frame's features, kept so an operator's correction can act on it."""

    features: list[torch.Tensor]
    image_feature: torch.Tensor
    score: float
    label: str
    admitted: bool


@dataclass
class Correction:
    """One operator verdict and exactly what it changed, so it can be undone."""

    correction_id: str
    frame_id: str
    verdict: str  # ok | defect
    defect_label: str | None
    previous_label: str
    score: float
    changes: dict[str, bool]
    band_before: tuple[float, float, str]
    band_after: tuple[float, float, str] = (math.nan, math.nan, "unset")
    undone: bool = False


class UnknownFrameError(KeyError):
    """A correction names a frame the scorer no longer (or never) held."""

    def __str__(self) -> str:
        return str(self.args[0])


class OnlineScorer:
    """Per-frame MuSc with a rolling window, judge and known-defect banks, thresholds and corrections."""

    def __init__(self, backbone: Backbone, settings: OnlineSettings = OnlineSettings(), device="cpu") -> None:
        self.backbone = backbone
        self.settings = settings
        self.device = torch.device(device)
        self.dtype = compute_dtype(self.device)
        self.window = RollingWindow(settings.window, self.device, self.dtype)
        self.judges: FeatureBank | None = None
        self.defects: FeatureBank | None = None
        self.thresholds = ThresholdPolicy(settings.thresholds)
        self.normal_scores: list[float] = []
        self.history: OrderedDict[str, FrameRecord] = OrderedDict()
        self.corrections: dict[str, Correction] = {}
        self.counts = {"frames": 0, "ok": 0, "unsure": 0, "defect": 0, "provisional": 0}
        self._next_frame = 0

    # ----------------------------------------------------------------------------------------- features
    @property
    def fingerprint(self) -> dict[str, object]:
        """What must match for features to be comparable (banks refuse imports that differ)."""
        return {
            "backbone": self.backbone.name,
            "image_size": self.backbone.image_size,
            "layers": list(self.backbone.layers),
            "r_list": list(self.settings.musc.r_list),
        }

    def _scoring_sets(self, layer_maps: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """LNAMD features of one image for every (degree, layer), (P_s, C_s) each, with their grids."""
        sets, grids = [], []
        for r in self.settings.musc.r_list:
            for layer in layer_maps:
                sets.append(lnamd(layer.to(self.device), r)[0].to(self.dtype))
                grids.append(tuple(layer.shape[-2:]))
        return sets, grids

    def _ensure_banks(self, image_feature: torch.Tensor) -> None:
        if self.judges is None:
            dim = image_feature.numel()
            self.judges = FeatureBank(dim, device=self.device)
            self.defects = FeatureBank(dim, device="cpu")

    # ------------------------------------------------------------------------------------------- judges
    def seed_judges(
        self,
        images: Sequence[np.ndarray],
        ids: Sequence[str],
        batch_size: int = 8,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Add known-good images (e.g. a folder from the line) as judges; their mutual MuSc scores seed the band.

        All seeds are scored against each other as one batch, so pass them together. Returns how many were added.
        """
        if len(images) != len(ids):
            raise ValueError(f"{len(images)} images but {len(ids)} ids")
        if not images:
            return 0
        layer_batches, feature_batches = [], []
        for start in range(0, len(images), batch_size):
            out = self.backbone.extract(list(images[start : start + batch_size]), self.device)
            layer_batches.append([m.float() for m in out.patch_features])
            feature_batches.append(out.image_features.float())
            if progress:
                progress(len(out.image_features))
        layer_maps = [torch.cat(parts) for parts in zip(*layer_batches, strict=True)]
        image_features = torch.cat(feature_batches)
        self._ensure_banks(image_features[0])
        scores = self._seed_scores(layer_maps, image_features)
        for i, judge_id in enumerate(ids):
            sets, _ = self._scoring_sets([m[i : i + 1] for m in layer_maps])
            self.judges.add(judge_id, image_features[i], sets, score=scores[i])
            self.normal_scores.append(scores[i])
        self._update_calibration()
        return len(ids)

    def _seed_scores(self, layer_maps: list[torch.Tensor], image_features: torch.Tensor) -> list[float]:
        """Scores of seed judges against each other (batch MuSc, same scale as frame scores)."""
        count = image_features.shape[0]
        if count < 2:
            return [0.0] * count
        batch = score_batch(layer_maps, image_features, self.backbone.image_size, self.settings.musc)
        rescored = self._rscin(
            batch.image_scores.float(), image_features.cpu() @ image_features.cpu().T, batch.image_scores.float()
        )
        return [float(s) for s in rescored]

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, image: np.ndarray, frame_id: str | None = None) -> Decision:
        """Decide one RGB uint8 frame (H, W, 3)."""
        return self.score_many([image], [frame_id])[0]

    def score_many(self, images: Sequence[np.ndarray], frame_ids: Sequence[str | None]) -> list[Decision]:
        """Decide a micro-batch: one backbone pass, then each frame in order (each sees the ones before it)."""
        started = time.perf_counter()
        out = self.backbone.extract(list(images), self.device)
        backbone_ms = 1e3 * (time.perf_counter() - started) / len(images)
        decisions = []
        for i, (image, frame_id) in enumerate(zip(images, frame_ids, strict=True)):
            decision = self.score_features(
                frame_id, [m[i : i + 1] for m in out.patch_features], out.image_features[i].float(), image.shape[:2]
            )
            decision.timings_ms = {"backbone": backbone_ms, **decision.timings_ms}
            decision.timings_ms["total"] += backbone_ms
            decisions.append(decision)
        return decisions

    def _pick_judges(self, image_feature: torch.Tensor) -> list[str]:
        """The judges most like this frame: ``judges_per_frame``, plus as many as the window lacks."""
        if self.judges is None or len(self.judges) == 0:
            return []
        wanted = self.settings.judges_per_frame + self.settings.window - len(self.window)
        if wanted <= 0:
            return []
        # Ask for extra: a judge that also votes in the window (a re-admitted correction) must not count twice.
        found = self.judges.search(image_feature, wanted + len(self.window))[0]
        return [judge_id for judge_id, _ in found if judge_id not in self.window][:wanted]

    def _reference_similarity(self, sets: list[torch.Tensor], judge_ids: list[str]) -> list[torch.Tensor]:
        """Per scoring set, (R, P) largest inner products from the frame's patches to each reference."""
        voters = self.window.slots()
        judge_sets = self.judges.patch_features(judge_ids) if judge_ids else None
        block = self.settings.musc.block_elements
        out = []
        for s, query in enumerate(sets):
            parts = []
            if len(voters):
                buffer = self.window.buffers[s]
                refs = buffer if self.window.full else buffer.index_select(0, voters)
                parts.append(query_similarity(query, refs, block))
            if judge_sets is not None:
                parts.append(query_similarity(query, judge_sets[s], block))
            out.append(torch.cat(parts))
        return out

    def _rscin(self, own: torch.Tensor, similarity: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """RsCIN for query rows: ``similarity`` (Q, R) to references with ``scores`` (R,) (queries included)."""
        if 0 in self.settings.musc.k_list:
            return own
        if self.settings.rscin_normalisation == "minmax":
            scores = min_max_normalise(scores)
        return neighbourhood_average(similarity, scores, self.settings.musc.k_list)

    def score_features(
        self,
        frame_id: str | None,
        layer_maps: Sequence[torch.Tensor],
        image_feature: torch.Tensor,
        image_size: tuple[int, int],
    ) -> Decision:
        """Decide a frame from its backbone features: per-layer (1, C, H, W) maps and its image feature."""
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            timings[name] = 1e3 * (now - clock)
            clock = now

        frame_id = self._new_frame_id(frame_id)
        image_feature = image_feature.reshape(-1).float().to(self.device)
        self._ensure_banks(image_feature)
        sets, grids = self._scoring_sets(layer_maps)
        lap("lnamd")

        judge_ids = self._pick_judges(image_feature)
        voters = len(self.window)
        patch_map, references = self._msm(sets, grids, judge_ids)
        lap("msm")

        size = (self.backbone.image_size, self.backbone.image_size)
        raw = float(upsample(patch_map[None], size).max()) if references else 0.0
        score = self.rescore(raw, image_feature, judge_ids)
        lap("rscin")

        band = self._current_band()
        label = band.decide(score)
        admitted = self._admit(frame_id, sets, image_feature, score, label, band)
        nearest = self._nearest_defect(image_feature)
        provisional = not (self.window.full and self.thresholds.calibrated)
        self._remember(frame_id, FrameRecord(sets, image_feature, score, label, admitted))
        self._count(label, provisional)
        lap("decide")
        timings["total"] = sum(timings.values())
        return Decision(
            frame_id=frame_id,
            score=score,
            raw_score=raw,
            label=label,
            band=band,
            provisional=provisional,
            patch_scores=patch_map.float().cpu().numpy(),
            image_size=tuple(int(v) for v in image_size),
            references={"voters": voters, "judges": len(judge_ids)},
            nearest_defect=nearest,
            admitted=admitted,
            timings_ms=timings,
        )

    def _new_frame_id(self, frame_id: str | None) -> str:
        if frame_id is None:
            frame_id = f"frame-{self._next_frame:08d}"
        self._next_frame += 1
        if frame_id in self.history or frame_id in self.window:
            raise ValueError(f"frame id {frame_id!r} was already scored")
        return frame_id

    def _msm(
        self, sets: list[torch.Tensor], grids: list[tuple[int, int]], judge_ids: list[str]
    ) -> tuple[torch.Tensor, int]:
        """Mean MSM patch map over the scoring sets on the finest grid, and the reference count."""
        finest = max(grids, key=lambda hw: hw[0] * hw[1])
        references = len(self.window) + len(judge_ids)
        if references == 0:
            return torch.zeros(finest, dtype=torch.float64), 0
        k = interval_size(references, self.settings.musc.topmin_max, self.settings.musc.topk_rounding)
        total = torch.zeros(finest, dtype=torch.float64, device=self.device)
        for similarity, grid in zip(self._reference_similarity(sets, judge_ids), grids, strict=True):
            scores = interval_mean(distances_from_similarity(similarity), k, dim=0)
            total += upsample(scores.view(1, *grid).double(), finest)[0]
        return (total / len(sets)).cpu(), references

    def rescore(self, raw: float, image_feature: torch.Tensor, judge_ids: Sequence[str] = ()) -> float:
        """Online RsCIN of one frame's raw score over itself, the window's voters and the given judges."""
        features = [image_feature[None], self.window.voter_image_features()]
        scores = [torch.tensor([raw], dtype=torch.float64), self.window.voter_scores()]
        if judge_ids:
            features.append(self.judges.image_features(judge_ids).to(self.device))
            scores.append(torch.tensor([self.judges.score(j) for j in judge_ids], dtype=torch.float64))
        features = torch.cat([f for f in features if f.numel()]).float()
        similarity = (image_feature[None] @ features.T).cpu()
        return float(self._rscin(torch.tensor([raw]), similarity, torch.cat(scores).float())[0])

    def _current_band(self) -> ThresholdBand:
        """The frozen band once calibrated; before that one from the normal scores seen so far."""
        if self.thresholds.calibrated:
            return self.thresholds.band
        band = calibrate(self.normal_scores, self.settings.thresholds)
        return band if band.source == "unset" else replace(band, source="provisional")

    def _admit(
        self,
        frame_id: str,
        sets: list[torch.Tensor],
        image_feature: torch.Tensor,
        score: float,
        label: str,
        band: ThresholdBand,
    ) -> bool:
        """Let the frame vote per the admission policy; with no band yet, every frame votes (warm-up)."""
        if self.settings.admission == "ok" and band.source != "unset" and label != "ok":
            return False
        self._admit_to_window(frame_id, sets, image_feature, score)
        self.normal_scores.append(score)
        self._update_calibration()
        return True

    def _admit_to_window(
        self, frame_id: str, sets: list[torch.Tensor], image_feature: torch.Tensor, score: float
    ) -> None:
        """Admit a voter; an ok correction stops lifting the band once its frame is pushed out (see thresholds)."""
        pushed_out = self.window.admit(frame_id, sets, image_feature, score)
        if pushed_out is not None:
            for correction in self.corrections.values():
                if correction.frame_id == pushed_out and correction.verdict == "ok" and not correction.undone:
                    self.thresholds.remove_label(correction.correction_id)

    def _update_calibration(self) -> None:
        if not self.thresholds.calibrated and len(self.normal_scores) >= self.settings.calibration_scores:
            self.thresholds.calibrate(self.normal_scores)

    def _nearest_defect(self, image_feature: torch.Tensor) -> NearestDefect | None:
        if self.defects is None or len(self.defects) == 0:
            return None
        defect_id, similarity = self.defects.search(image_feature.cpu(), 1)[0][0]
        if similarity < self.settings.defect_match:
            return None
        return NearestDefect(defect_id, self.defects.label(defect_id), float(similarity))

    def _remember(self, frame_id: str, record: FrameRecord) -> None:
        self.history[frame_id] = record
        while len(self.history) > self.settings.history:
            self.history.popitem(last=False)

    def _count(self, label: str, provisional: bool) -> None:
        self.counts["frames"] += 1
        self.counts[label] += 1
        self.counts["provisional"] += int(provisional)

    # -------------------------------------------------------------------------------------- corrections
    def _frame_data(self, frame_id: str) -> tuple[list[torch.Tensor], torch.Tensor, float, str]:
        """Features, image feature, score and decided label of a frame, wherever the scorer still holds it."""
        if frame_id in self.history:
            record = self.history[frame_id]
            return record.features, record.image_feature, record.score, record.label
        for bank, label in ((self.judges, "ok"), (self.defects, "defect")):
            if bank is not None and frame_id in bank:
                features = [f.to(self.device, self.dtype) for f in bank.patch_features([frame_id])]
                image_feature = bank.image_features([frame_id])[0].to(self.device)
                return [f[0] for f in features], image_feature, float(bank.score(frame_id)), label
        raise UnknownFrameError(
            f"frame {frame_id!r} is not among the last {self.settings.history} frames, the judges or the known "
            "defects: it is too old (or unknown) to correct; add its image as a judge instead"
        )

    def _new_correction(
        self,
        correction_id: str | None,
        frame_id: str,
        verdict: str,
        defect_label: str | None,
        score: float,
        previous_label: str,
    ) -> Correction:
        correction_id = correction_id or f"c{len(self.corrections) + 1}"
        if correction_id in self.corrections:
            raise ValueError(f"correction id {correction_id!r} is already used")
        band = self.thresholds.band
        return Correction(
            correction_id,
            frame_id,
            verdict,
            defect_label,
            previous_label,
            score,
            {},
            (band.low, band.high, band.source),
        )

    def _finish(self, correction: Correction) -> Correction:
        band = self.thresholds.band
        correction.band_after = (band.low, band.high, band.source)
        self.corrections[correction.correction_id] = correction
        return correction

    def confirm_normal(self, frame_id: str, correction_id: str | None = None) -> Correction:
        """An operator says the frame is good: it becomes a judge, votes again, and the band moves if needed."""
        features, image_feature, score, previous = self._frame_data(frame_id)
        if self.judges is not None and frame_id in self.judges:
            raise ValueError(f"frame {frame_id!r} is already a judge (confirmed ok)")
        correction = self._new_correction(correction_id, frame_id, "ok", None, score, previous)
        changes = correction.changes
        if self.defects is not None and frame_id in self.defects:
            correction.defect_label = self.defects.label(frame_id)
            self.defects.remove(frame_id)
            changes["defect_removed"] = True
        self._ensure_banks(image_feature)
        self.judges.add(frame_id, image_feature, features, score=score)
        changes["judge_added"] = True
        if frame_id not in self.window:
            self._admit_to_window(frame_id, features, image_feature, score)
            changes["readmitted"] = True
        self.thresholds.add_label(correction.correction_id, score, is_defect=False)
        return self._finish(correction)

    def confirm_defect(self, frame_id: str, label: str | None = None, correction_id: str | None = None) -> Correction:
        """An operator says the frame is defective: it stops voting now and names its look-alikes from then on."""
        features, image_feature, score, previous = self._frame_data(frame_id)
        if self.defects is not None and frame_id in self.defects:
            raise ValueError(f"frame {frame_id!r} is already a known defect")
        correction = self._new_correction(correction_id, frame_id, "defect", label, score, previous)
        changes = correction.changes
        if self.window.evict(frame_id):
            changes["evicted"] = True
        if self.judges is not None and frame_id in self.judges:
            self.judges.remove(frame_id)
            changes["judge_removed"] = True
        self._ensure_banks(image_feature)
        self.defects.add(frame_id, image_feature.cpu(), [f.cpu() for f in features], label=label, score=score)
        changes["defect_added"] = True
        self.thresholds.add_label(correction.correction_id, score, is_defect=True)
        return self._finish(correction)

    def undo(self, correction_id: str) -> Correction:
        """Reverse one correction exactly (banks, window membership and band)."""
        correction = self.corrections.get(correction_id)
        if correction is None:
            raise KeyError(f"no correction {correction_id!r}")
        if correction.undone:
            raise ValueError(f"correction {correction_id!r} was already undone")
        frame_id, changes = correction.frame_id, correction.changes
        features, image_feature, score, _ = self._frame_data(frame_id)
        if changes.get("readmitted"):
            self.window.evict(frame_id)
        if changes.get("judge_added"):
            self.judges.remove(frame_id)
        if changes.get("defect_added"):
            self.defects.remove(frame_id)
        if changes.get("judge_removed"):
            self.judges.add(frame_id, image_feature, features, score=score)
        if changes.get("evicted") and frame_id not in self.window:
            self._admit_to_window(frame_id, features, image_feature, score)
        if changes.get("defect_removed"):
            self.defects.add(
                frame_id, image_feature.cpu(), [f.cpu() for f in features], label=correction.defect_label, score=score
            )
        self.thresholds.remove_label(correction_id)
        correction.undone = True
        return correction

    # ------------------------------------------------------------------------------------------- judges
    def remove_judge(self, judge_id: str) -> None:
        """Take a judge out of the bank (it stays in the window if it votes there)."""
        if self.judges is None or judge_id not in self.judges:
            raise KeyError(f"no judge {judge_id!r} in the bank")
        self.judges.remove(judge_id)

    def export_judges(self, path: str | Path) -> int:
        """Write the judge bank to one zip file (FAISS index, features, metadata: no pickles); returns its size."""
        if self.judges is None or len(self.judges) == 0:
            raise ValueError("the judge bank is empty: nothing to export")
        path = Path(path)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "judges"
            self.judges.save(folder, self.fingerprint)
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(folder.iterdir()):
                    archive.write(file, file.name)
        return len(self.judges)

    def import_judges(self, path: str | Path) -> list[str]:
        """Add the judges of an exported bank (same backbone and settings only); returns the ids added."""
        path = Path(path)
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a judge bank export (a zip file made by 'judges export')")
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not names <= JUDGE_EXPORT_FILES:
                raise ValueError(f"{path} holds unexpected files {sorted(names - JUDGE_EXPORT_FILES)}")
            archive.extractall(tmp)
            incoming = FeatureBank.load(Path(tmp), self.fingerprint, device=self.device)
        added = []
        for judge_id in incoming.ids():
            if self.judges is not None and judge_id in self.judges:
                continue
            features = [f[0] for f in incoming.patch_features([judge_id])]
            image_feature = incoming.image_features([judge_id])[0]
            self._ensure_banks(image_feature)
            self.judges.add(judge_id, image_feature, features, score=incoming.score(judge_id))
            added.append(judge_id)
        return added

    def set_band(self, low: float, high: float) -> ThresholdBand:
        """Set the decision band by hand (corrections still adjust it)."""
        return self.thresholds.set_band(low, high)

    def recalibrate(self) -> ThresholdBand:
        """Calibrate the band again from the current judges and voters (e.g. after a product change)."""
        scores = [self.judges.score(j) for j in self.judges.ids()] if self.judges else []
        scores += [float(s) for s in self.window.voter_scores()]
        return self.thresholds.calibrate(scores)

    def stats(self) -> dict[str, object]:
        """Counters and state for status displays and metrics."""
        band = self._current_band()
        return {
            **self.counts,
            "window": len(self.window),
            "window_capacity": self.window.capacity,
            "judges": len(self.judges) if self.judges else 0,
            "known_defects": len(self.defects) if self.defects else 0,
            "band": {"low": band.low, "high": band.high, "source": band.source},
            "corrections": sum(not c.undone for c in self.corrections.values()),
            "corrections_moving_band": self.thresholds.moved_by,
        }

    # -------------------------------------------------------------------------------------- persistence
    def save(self, folder: str | Path) -> Path:
        """Write judges, known defects, window, band and corrections under ``folder`` (replaced whole)."""
        folder = Path(folder)
        staging = folder.with_name(folder.name + ".saving")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        if self.judges is not None:
            self.judges.save(staging / "judges", self.fingerprint)
            self.defects.save(staging / "defects", self.fingerprint)
        ids = self.window.ids
        arrays = {"scores": self.window.voter_scores().numpy()}
        if ids:
            slots = self.window.slots()
            arrays["image_features"] = self.window.image_features.index_select(0, slots).cpu().numpy()
            for s, buffer in enumerate(self.window.buffers):
                arrays[f"set{s}"] = buffer.index_select(0, slots).float().cpu().numpy()
        np.savez(staging / "window.npz", **arrays)
        state = {
            "format": 1,
            "fingerprint": self.fingerprint,
            "window_ids": ids,
            "thresholds": self.thresholds.state(),
            "normal_scores": self.normal_scores,
            "counts": self.counts,
            "next_frame": self._next_frame,
            "corrections": [asdict(c) for c in self.corrections.values()],
        }
        (staging / "state.json").write_text(json.dumps(state, indent=1))
        previous = folder.with_name(folder.name + ".previous")
        if folder.exists():
            if previous.exists():
                shutil.rmtree(previous)
            folder.rename(previous)
        staging.rename(folder)
        if previous.exists():
            shutil.rmtree(previous)
        return folder

    def load(self, folder: str | Path) -> dict[str, int]:
        """Restore what ``save`` wrote; refuses state from another backbone or settings. Returns what it recovered."""
        folder = Path(folder)
        if not (folder / "state.json").is_file() and folder.with_name(folder.name + ".previous").is_dir():
            folder = folder.with_name(folder.name + ".previous")  # a save was cut off between its two renames
        state_file = folder / "state.json"
        if not state_file.is_file():
            raise FileNotFoundError(f"no scorer state at {folder} (state.json missing)")
        state = json.loads(state_file.read_text())
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"scorer state at {folder} was made with {state['fingerprint']}, not {self.fingerprint}")
        if (folder / "judges").is_dir():
            self.judges = FeatureBank.load(folder / "judges", self.fingerprint, device=self.device)
            self.defects = FeatureBank.load(folder / "defects", self.fingerprint, device="cpu")
        self.window = RollingWindow(self.settings.window, self.device, self.dtype)
        with np.load(folder / "window.npz", allow_pickle=False) as arrays:
            ids = state["window_ids"][-self.settings.window :]
            skip = len(state["window_ids"]) - len(ids)
            sets = sorted((k for k in arrays.files if k.startswith("set")), key=lambda k: int(k[3:]))
            for i, frame_id in enumerate(ids, start=skip):
                features = [torch.from_numpy(arrays[k][i]).to(self.device, self.dtype) for k in sets]
                feature = torch.from_numpy(arrays["image_features"][i]).to(self.device)
                self.window.admit(frame_id, features, feature, float(arrays["scores"][i]))
        self.thresholds.restore(state["thresholds"])
        self.normal_scores = [float(s) for s in state["normal_scores"]]
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self._next_frame = int(state["next_frame"])
        self.corrections = {}
        for raw in state["corrections"]:
            raw["band_before"], raw["band_after"] = tuple(raw["band_before"]), tuple(raw["band_after"])
            self.corrections[raw["correction_id"]] = Correction(**raw)
        return {
            "judges": len(self.judges) if self.judges else 0,
            "known_defects": len(self.defects) if self.defects else 0,
            "window": len(self.window),
            "corrections": len(self.corrections),
        }
