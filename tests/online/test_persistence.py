"""Saved scorer state across a backbone rename: the alias table keeps a line's judges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musc_online import backbones
from musc_online.backbones import create_backbone
from musc_online.online.bank import BankMismatchError
from musc_online.online.judges import seed_judges
from musc_online.online.persistence import load, save
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings, ThresholdSettings


def test_state_saved_under_an_old_backbone_name_loads_and_another_backbone_is_refused(tmp_path, monkeypatch):
    images = [np.full((64, 64, 3), 100 + i, dtype=np.uint8) for i in range(4)]
    scorer = OnlineScorer(create_backbone("test_random_vit"), OnlineSettings(window=4, judges_per_frame=2))
    seed_judges(scorer, images, [f"seed{i}" for i in range(4)])
    save(scorer, tmp_path / "state")
    state_file = tmp_path / "state" / "state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"]["backbone"] = "tiny_vit_before_the_rename"  # what an older release called it
    state_file.write_text(json.dumps(state))

    restored = OnlineScorer(scorer.backbone, OnlineSettings(window=4, judges_per_frame=2))
    with pytest.raises(BankMismatchError, match="saved 'tiny_vit_before_the_rename', expected 'test_random_vit'"):
        load(restored, tmp_path / "state")
    monkeypatch.setitem(backbones._ALIASES, "tiny_vit_before_the_rename", "test_random_vit")  # the rename's entry
    assert load(restored, tmp_path / "state")["judges"] == 4


def test_a_line_loaded_under_another_care_area_keeps_judges_and_window_and_calibrates_afresh(tmp_path, caplog):
    from musc_online.roi import CareArea

    settings = OnlineSettings(
        window=2, judges_per_frame=2, calibration_scores=4, thresholds=ThresholdSettings(min_scores=4)
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(9)]
    scorer = OnlineScorer(create_backbone("test_random_vit"), settings)
    seed_judges(scorer, images[:4], [f"seed{i}" for i in range(4)])
    for i, image in enumerate(images[4:7]):
        scorer.score(image, f"frame{i}")
    assert scorer.thresholds.calibrated and not scorer.calibration.pending
    save(scorer, tmp_path / "state")
    whole_band = scorer.calibration.band()

    same = OnlineScorer(scorer.backbone, settings)
    load(same, tmp_path / "state")  # no care area saved, none now: as before
    assert same.calibration.band() == whole_band and "care area" not in caplog.text

    restored = OnlineScorer(scorer.backbone, settings)
    restored.care_area = CareArea.from_polygons([[[0, 0], [31, 0], [31, 63], [0, 63]]], (64, 64))
    recovered = load(restored, tmp_path / "state")
    assert recovered["judges"] == 4 and recovered["window"] == 2  # kept
    assert "the care area differs" in caplog.text and "calibrate afresh" in caplog.text
    assert not restored.thresholds.calibrated
    assert sorted(restored.calibration.pending) == [f"seed{i}" for i in range(4)]  # scored again over the new area
    assert restored.calibration.judge_band().source != "unset"  # the judges' own opinion, taken now
    restored.score(images[7], "frame-a")
    restored.score(images[8], "frame-b")
    assert restored.thresholds.calibrated and restored.calibration.band() != whole_band

    caplog.clear()
    save(restored, tmp_path / "state")
    again = OnlineScorer(scorer.backbone, settings)
    again.care_area = CareArea.from_polygons([[[0, 0], [31, 0], [31, 63], [0, 63]]], (64, 64))
    load(again, tmp_path / "state")  # the same area: the band it was calibrated under
    assert again.calibration.band() == restored.calibration.band() and "care area" not in caplog.text
