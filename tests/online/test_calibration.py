"""Where the bands come from: known-good scores first, warm-up scores only for a shortfall; an ok verdict lifts
both bands while its frame votes, a defect verdict moves the combined band only; state round-trips."""

import math
from dataclasses import replace

import numpy as np
import pytest

from musc_online.online.calibration import Calibration
from musc_online.online.settings import OnlineSettings, ThresholdSettings
from musc_online.online.thresholds import calibrate

SETTINGS = OnlineSettings(calibration_scores=10, thresholds=ThresholdSettings(min_scores=4))


def _scores(centre: float, n: int, seed: int = 0) -> list[float]:
    return list(centre + 0.01 * np.random.default_rng(seed).standard_normal(n))


def test_known_good_scores_set_the_band_and_warm_up_scores_only_make_up_the_shortfall():
    calibration = Calibration(SETTINGS)
    for score in _scores(1.0, 8):  # seed judges
        calibration.add_known_good(score, None)
    assert calibration.band().source == "provisional"
    for score in _scores(5.0, 6, seed=1):  # warm-up frames scoring far higher: only two count
        calibration.add_admitted(score)
    band = calibration.band()
    assert band.source == "calibrated" and band.low < 2.0
    assert calibration.recalibrate(_scores(5.0, 30, seed=2)).low < 2.0  # voters only make up the shortfall too
    without_judges = Calibration(SETTINGS)
    for score in _scores(5.0, 10, seed=1):
        without_judges.add_admitted(score)
    assert without_judges.band().source == "calibrated" and without_judges.band().low > 4.0


def test_the_band_freezes_once_calibrated_and_recalibrate_needs_enough_scores():
    calibration = Calibration(SETTINGS)
    for score in _scores(1.0, 10):
        calibration.add_known_good(score, None)
    frozen = calibration.band()
    calibration.add_known_good(9.0, None)
    assert calibration.band() == frozen
    assert calibration.recalibrate([]).high > frozen.high  # the 9.0 counts now
    with pytest.raises(ValueError, match="at least 4 normal scores"):
        Calibration(SETTINGS).recalibrate([1.0])


def test_an_ok_verdict_lifts_both_bands_until_its_frame_stops_voting():
    calibration = Calibration(SETTINGS)
    for score, judged in zip(_scores(1.0, 10), _scores(2.0, 10, seed=3), strict=True):
        calibration.add_known_good(score, judged)
    combined, judges = calibration.band(), calibration.judge_band()
    assert judges.source == "calibrated"
    calibration.add_label("c1", 1.5, 2.5, is_defect=False)
    assert calibration.band().low > 1.5 and calibration.judge_band().low > 2.5
    calibration.add_label("c2", 0.9, 1.9, is_defect=True)  # a defect verdict leaves the judges' band alone
    assert calibration.judge_band().low > 2.5
    calibration.remove_label("c1")  # the frame left the window (or the verdict was undone): no lasting lift
    assert calibration.judge_band() == judges and calibration.band().high == combined.high


def test_a_restored_older_snapshot_ends_judges_lifts_whose_frame_no_longer_votes():
    calibration = Calibration(SETTINGS)
    for score, judged in zip(_scores(1.0, 10), _scores(2.0, 10, seed=3), strict=True):
        calibration.add_known_good(score, judged)
    calibration.add_label("voting", 1.02, 2.2, is_defect=False)
    state = calibration.state()
    state["judge_thresholds"]["labels"]["left"] = [2.5, False]  # older versions kept it after the frame left
    restored = Calibration(SETTINGS)
    restored.restore(state)
    assert restored.judge_thresholds.labels.keys() == {"voting"}
    assert 2.2 < restored.judge_band().low < 2.5  # the voting frame's lift stays, the other one ended


def test_a_defect_verdict_lowers_a_provisional_band_too():
    calibration = Calibration(SETTINGS)
    for score in _scores(1.0, 5):
        calibration.add_known_good(score, None)
    assert calibration.band().source == "provisional"
    before = calibration.band()
    calibration.add_label("c1", 1.01, None, is_defect=True)
    band = calibration.band()
    assert band.low == 1.01 and band.high == before.high and band.source == "corrections"


def test_expected_rates_follow_the_target_and_state_round_trips():
    settings = OnlineSettings(calibration_scores=400)
    calibration = Calibration(settings)
    for score, judged in zip(_scores(1.0, 400), _scores(2.0, 400, seed=5), strict=True):
        calibration.add_known_good(score, judged)
    rates = calibration.expected_per_1000()
    assert rates["flagged"] == pytest.approx(settings.thresholds.flagged_per_1000, rel=0.05)
    assert rates["false_alarms"] == pytest.approx(settings.thresholds.false_alarms_per_1000, rel=0.05)
    assert 0 <= rates["observed_false_alarms"] <= rates["observed_flagged"] <= 60
    restored = Calibration(settings)
    restored.restore(calibration.state())
    assert restored.band() == calibration.band() and restored.judge_band() == calibration.judge_band()
    assert all(v is None for v in Calibration(settings).expected_per_1000().values())
    assert math.isnan(Calibration(settings).band().low)


def test_seeds_stand_in_by_their_mutual_scores_until_scored_steady_and_survive_a_restart():
    calibration = Calibration(SETTINGS)
    for i, (mutual, judged) in enumerate(zip(_scores(1.0, 11), _scores(2.0, 11, seed=3), strict=True)):
        calibration.add_seed(f"s{i}", mutual, judged)
    assert calibration.band().source == "provisional" and calibration.band().high < 1.2  # the mutual scores
    assert calibration.judge_band().source == "calibrated"
    restored = Calibration(SETTINGS)
    restored.restore(calibration.state())
    assert restored.pending == calibration.pending and restored.seeded == calibration.seeded
    for i, steady in enumerate(_scores(3.0, 10, seed=4)):
        restored.add_steady(f"s{i}", steady)
    assert restored.band().source == "provisional"  # one seed still pending: not frozen yet
    restored.add_steady("s10", None)  # left the bank before its turn
    band = restored.band()
    assert band.source == "calibrated" and band.low > 2.0  # the steady scores, not the mutual ones
    assert restored.known_good == pytest.approx(_scores(3.0, 10, seed=4))


def test_seeds_fall_due_when_the_window_fills_or_after_a_window_of_frames_without_it():
    calibration = Calibration(replace(SETTINGS, window=3))
    assert not calibration.seeds_due(1, window_full=True)  # nothing pending
    calibration.add_seed("s0", 1.0, None)
    assert calibration.seeds_due(0, window_full=True)
    waiting = Calibration(replace(SETTINGS, window=3))
    waiting.add_seed("s0", 1.0, None)
    assert [waiting.seeds_due(1, window_full=False) for _ in range(6)] == [False] * 5 + [True]  # never stuck
    batches = Calibration(replace(SETTINGS, window=3))
    batches.add_seed("s0", 1.0, None)
    assert [batches.seeds_due(n, window_full=False) for n in (0, 4, 0, 2)] == [False, False, False, True]


def test_the_judges_band_is_fitted_to_every_seed_not_the_first_few():
    calibration = Calibration(SETTINGS)
    narrow, wide = _scores(2.0, 4, seed=6), list(2.0 + 0.2 * np.random.default_rng(7).standard_normal(12))
    for i, judged in enumerate(narrow + wide):  # seeds arrive one by one; the first four happen to agree closely
        calibration.add_seed(f"s{i}", 1.0, judged)
    assert calibration.judge_band() == calibrate(narrow + wide, SETTINGS.thresholds)


def test_a_seeded_line_with_fewer_seeds_than_calibration_scores_calibrates_once_they_are_scored():
    calibration = Calibration(SETTINGS)  # calibration_scores 10, and only 6 seeds
    for i, mutual in enumerate(_scores(1.0, 6)):
        calibration.add_seed(f"s{i}", mutual, None)
    for i, steady in enumerate(_scores(3.0, 6, seed=4)):  # no frame is admitted: the window never fills
        assert calibration.band().source == "provisional"
        calibration.add_steady(f"s{i}", steady)
    assert calibration.band() == calibrate(_scores(3.0, 6, seed=4), SETTINGS.thresholds)
    few = Calibration(SETTINGS)
    for i, steady in enumerate(_scores(3.0, 3, seed=4)):  # fewer than thresholds.min_scores: still waiting
        few.add_seed(f"s{i}", 1.0, None)
        few.add_steady(f"s{i}", steady)
    assert few.band().source == "unset"
