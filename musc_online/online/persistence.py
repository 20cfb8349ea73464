"""A scorer's state on disk: judges, known defects, window, band, corrections and counters; judge bank files.

Saving is split in two so that a running line never writes files while it holds its scorer: ``capture``
copies the state (fast, under the caller's lock), ``ScorerSnapshot.write`` writes it atomically (slow, outside
it). Everything is plain ``.npz`` and JSON: no pickles, no native index bytes. ``load`` refuses state from another
backbone (an old name of the same backbone counts as it), image size, layer set or degree list. The bands depend
on the care area (``roi``) too: state saved under another one keeps its judges and window, and calibrates afresh.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from musc_online.atomic import replaced_folder, restored
from musc_online.online.bank import (
    FEATURES_FILE,
    INDEX_FILE,
    META_FILE,
    BankContents,
    FeatureBank,
    check_fingerprint,
)
from musc_online.online.calibration import Calibration
from musc_online.online.corrections import Correction
from musc_online.online.judges import judges_opinion
from musc_online.online.scorer import OnlineScorer
from musc_online.online.window import RollingWindow
from musc_online.roi import care_fingerprint
from musc_online.tiling.layout import TileLayout

FORMAT = 2  # 2: two calibrated opinions (judges' own band, known-good pools)
STATE_FILE = "state.json"
WINDOW_FILE = "window.npz"
JUDGE_EXPORT_FILES = {INDEX_FILE, FEATURES_FILE, META_FILE}  # older exports also hold INDEX_FILE: ignored

log = logging.getLogger("musc.online")


@dataclass(frozen=True)
class ScorerSnapshot:
    """A copy of everything a scorer needs to resume, independent of the scorer once taken."""

    judges: BankContents | None
    defects: BankContents | None
    window: dict[str, np.ndarray]
    state: dict[str, object]

    def write(self, folder: str | Path) -> Path:
        """Write the snapshot under ``folder``, replacing what was there whole (see ``musc_online.atomic``)."""
        folder = Path(folder)
        with replaced_folder(folder) as staging:
            if self.judges is not None:
                self.judges.write(staging / "judges")
            if self.defects is not None:
                self.defects.write(staging / "defects")
            np.savez(staging / WINDOW_FILE, **self.window)
            (staging / STATE_FILE).write_text(json.dumps(self.state, indent=1))
        return folder


def capture(scorer: OnlineScorer) -> ScorerSnapshot:
    """Copy the scorer's state (hold the scorer's lock while this runs, not while the snapshot is written)."""
    window = scorer.window
    ids = window.ids
    arrays = {"scores": window.voter_scores().numpy().copy()}
    if ids:
        slots = window.slots()
        arrays["image_features"] = window.image_features.index_select(0, slots).cpu().numpy()
        for s, buffer in enumerate(window.buffers):
            arrays[f"set{s}"] = buffer.index_select(0, slots).float().cpu().numpy()
    state = {
        "format": FORMAT,
        "fingerprint": scorer.fingerprint,
        "care_area": care_fingerprint(scorer.care_area),
        "tile_layout": None if scorer.views.layout is None else [scorer.views.layout.rows, scorer.views.layout.cols],
        "window_ids": ids,
        "calibration": scorer.calibration.state(),
        "counts": dict(scorer.counts),
        "next_frame": scorer.next_frame,
        "corrections": [asdict(c) for c in scorer.corrections.values()],
    }
    has_banks = scorer.judges is not None
    return ScorerSnapshot(
        scorer.judges.contents(scorer.fingerprint) if has_banks else None,
        scorer.defects.contents(scorer.fingerprint) if has_banks else None,
        arrays,
        json.loads(json.dumps(state)),  # a deep copy, as the file will hold it
    )


def save(scorer: OnlineScorer, folder: str | Path) -> Path:
    """Capture and write at once (for callers with no concurrent scoring to worry about)."""
    return capture(scorer).write(folder)


def has_state(folder: str | Path) -> bool:
    """True when ``folder`` (or the copy a cut-off save left) holds a saved scorer state."""
    return (restored(folder) / STATE_FILE).is_file()


def load(scorer: OnlineScorer, folder: str | Path) -> dict[str, int]:
    """Restore what ``save`` wrote into ``scorer``; returns how much it recovered."""
    folder = restored(folder)
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"no scorer state at {folder} ({STATE_FILE} missing)")
    state = json.loads(state_file.read_text())
    check_fingerprint(f"the scorer state at {folder}", state["fingerprint"], scorer.fingerprint)
    if (folder / "judges").is_dir():
        scorer.judges = FeatureBank.load(folder / "judges", scorer.fingerprint, device=scorer.device)
        scorer.defects = FeatureBank.load(folder / "defects", scorer.fingerprint, device="cpu")
    scorer.window = RollingWindow(scorer.settings.window, scorer.device, scorer.dtype)
    with np.load(folder / WINDOW_FILE, allow_pickle=False) as arrays:
        ids = state["window_ids"][-scorer.settings.window :]
        skip = len(state["window_ids"]) - len(ids)
        sets = sorted((k for k in arrays.files if k.startswith("set")), key=lambda k: int(k[3:]))
        for i, frame_id in enumerate(ids, start=skip):
            features = [torch.from_numpy(arrays[k][i]).to(scorer.device, scorer.dtype) for k in sets]
            feature = torch.from_numpy(arrays["image_features"][i]).to(scorer.device)
            scorer.window.admit(frame_id, features, feature, float(arrays["scores"][i]))
    if state["format"] == 1:  # one band, and the normal scores it came from: they were all admitted frames'
        calibration = {"admitted": state["normal_scores"], "known_good": [], "known_good_judged": []}
        unset = {"base": [float("nan"), float("nan"), "unset"], "labels": {}}
        calibration |= {"thresholds": state["thresholds"], "judge_thresholds": unset}
        state["calibration"] = calibration
    scorer.calibration.restore(state["calibration"])
    if state.get("tile_layout"):  # how the saved features were cut (tiles.tile_size: known from the first frame)
        scorer.views.layout = TileLayout(*state["tile_layout"], scorer.settings.tiles.overlap)
    scorer.counts |= {k: int(v) for k, v in state["counts"].items()}  # older snapshots lack final_flagged
    scorer.next_frame = int(state["next_frame"])
    scorer.corrections = {}
    for raw in state["corrections"]:
        raw["band_before"], raw["band_after"] = tuple(raw["band_before"]), tuple(raw["band_after"])
        scorer.corrections[raw["correction_id"]] = Correction(**raw)
    if state.get("care_area") != care_fingerprint(scorer.care_area):  # None: the whole frame (and older states)
        log.warning(
            "the care area differs from the one %s was saved with (now: %s): judges and window kept, the bands "
            "calibrate afresh from the judges scored over the new area",
            folder,
            "the whole frame" if scorer.care_area is None else scorer.care_area.source,
        )
        calibrate_afresh(scorer)
    return {
        "judges": len(scorer.judges) if scorer.judges else 0,
        "known_defects": len(scorer.defects) if scorer.defects else 0,
        "window": len(scorer.window),
        "corrections": len(scorer.corrections),
    }


def calibrate_afresh(scorer: OnlineScorer) -> None:
    """Start the bands over, as at a first start with the scorer's judges as seeds: the judges' band from each
    judge's own opinion now, the combined band from each judge scored as a steady frame once due (provisional until
    then). For a changed care area, over which every kept score was taken; corrections stop moving the bands."""
    scorer.calibration = Calibration(scorer.settings)
    if not scorer.judges:
        return
    size = scorer.backbone.image_size
    blank = scorer.backbone.extract([np.zeros((size, size, 3), np.uint8)], scorer.device)
    grids = scorer.scoring_sets(blank.patch_features)[1]
    for judge_id in scorer.judges.ids():
        sets = [features[0].to(scorer.device, scorer.dtype) for features in scorer.judges.patch_features([judge_id])]
        image_feature = scorer.judges.image_features([judge_id])[0].to(scorer.device)
        judged = judges_opinion(scorer, sets, grids, image_feature, judge_id)
        if judged is not None:
            scorer.calibration.known_good_judged.append(judged)
        scorer.calibration.pending.append(judge_id)  # no stand-in: mutual scores were taken over the old area
    scorer.calibration.update()


def export_judges(scorer: OnlineScorer, path: str | Path) -> int:
    """Write the judge bank to one zip file (features and metadata: no pickles); returns its size."""
    if scorer.judges is None or len(scorer.judges) == 0:
        raise ValueError("the judge bank is empty: nothing to export")
    write_judges(scorer.judges.contents(scorer.fingerprint), path)
    return len(scorer.judges)


def write_judges(contents: BankContents, path: str | Path) -> None:
    """Write a judge bank's contents as one zip file."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "judges"
        contents.write(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.iterdir()):
                archive.write(file, file.name)


def read_judges(path: str | Path, fingerprint: dict[str, object], device: torch.device, what: str = "") -> FeatureBank:
    """An exported judge bank, refused when it was made with another backbone or settings."""
    path = Path(path)
    what = what or str(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} is not a judge bank export (a zip file made by 'judges export')")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if not names <= JUDGE_EXPORT_FILES:
            raise ValueError(f"{what} holds unexpected files {sorted(names - JUDGE_EXPORT_FILES)}")
        archive.extractall(tmp)
        if META_FILE in names:  # say which export differs, not which temporary folder
            check_fingerprint(what, json.loads((Path(tmp) / META_FILE).read_text()).get("fingerprint", {}), fingerprint)
        return FeatureBank.load(Path(tmp), fingerprint, device=device)


def judges_archive(contents: BankContents) -> bytes:
    """A judge bank export as bytes (what ``write_judges`` writes to a file), e.g. to keep in the store."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "judges.zip"
        write_judges(contents, path)
        return path.read_bytes()


def judges_from_archive(data: bytes, what: str, scorer: OnlineScorer) -> FeatureBank:
    """Inverse of ``judges_archive`` for this scorer: refused, naming ``what``, when made with other settings."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "judges.zip"
        path.write_bytes(data)
        return read_judges(path, scorer.fingerprint, scorer.device, what)


def add_imported_judges(scorer: OnlineScorer, incoming: FeatureBank) -> list[str]:
    """Add the judges of a read bank that this scorer lacks; returns the ids added."""
    added = []
    for judge_id in incoming.ids():
        if scorer.judges is not None and judge_id in scorer.judges:
            continue
        features = [f[0] for f in incoming.patch_features([judge_id])]
        image_feature = incoming.image_features([judge_id])[0]
        scorer.ensure_banks(image_feature)
        scorer.judges.add(judge_id, image_feature, features, score=incoming.score(judge_id))
        added.append(judge_id)
    return added


def import_judges(scorer: OnlineScorer, path: str | Path) -> list[str]:
    """Add the judges of an exported bank (same backbone and settings only); returns the ids added."""
    return add_imported_judges(scorer, read_judges(path, scorer.fingerprint, scorer.device))
