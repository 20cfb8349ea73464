import math

import numpy as np
import pytest

from musc_online.online.settings import ThresholdSettings
from musc_online.online.thresholds import UNSET, ThresholdPolicy, calibrate
from musc_online.settings import SettingError


def _normal_scores(n=200, seed=0):
    return np.random.default_rng(seed).normal(1.0, 0.1, n)


def test_calibrated_band_sits_above_most_normal_scores():
    scores = _normal_scores()
    band = calibrate(scores)
    assert band.source == "calibrated"
    assert np.quantile(scores, 0.95) < band.low < band.high
    assert np.mean([band.decide(s) == "ok" for s in scores]) > 0.95
    assert band.decide(band.high) == "defect"
    assert band.decide((band.low + band.high) / 2) == "unsure"


def test_too_few_scores_leave_band_unset_and_everything_unsure():
    band = calibrate([1.0, 1.1, 0.9])
    assert band is UNSET
    assert band.decide(0.0) == "unsure"


def test_confirmed_ok_lifts_low_above_its_score_and_undo_restores():
    policy = ThresholdPolicy()
    base = policy.calibrate(_normal_scores())
    false_alarm = base.high + 0.05
    policy.add_label("c1", false_alarm, is_defect=False)
    band = policy.band
    assert band.source == "corrections"
    assert band.decide(false_alarm) == "ok"
    assert math.isclose(band.high - band.low, base.high - base.low, rel_tol=1e-9)
    assert policy.moved_by == 1
    policy.remove_label("c1")
    assert policy.band == base


def test_missed_defect_lowers_band_and_wins_over_a_conflicting_ok():
    policy = ThresholdPolicy()
    base = policy.calibrate(_normal_scores())
    missed = base.low - 0.05
    policy.add_label("ok", missed + 0.01, is_defect=False)
    policy.add_label("defect", missed, is_defect=True)
    band = policy.band
    assert band.decide(missed) == "defect"
    assert band.low <= missed


def test_operator_band_is_validated():
    policy = ThresholdPolicy()
    with pytest.raises(ValueError, match="low <= high"):
        policy.set_band(2.0, 1.0)
    assert policy.set_band(1.0, 2.0).source == "operator"


def test_state_round_trip():
    policy = ThresholdPolicy()
    policy.calibrate(_normal_scores())
    policy.add_label("c1", 5.0, True)
    other = ThresholdPolicy()
    other.restore(policy.state())
    assert other.band == policy.band


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"quantile": 1.0}, "quantile"),
        ({"low_margin": 2.0, "high_margin": 1.0}, "high_margin"),
        ({"min_scores": 1}, "min_scores"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs, key):
    with pytest.raises(SettingError) as caught:
        ThresholdSettings(**kwargs)
    assert caught.value.keys[0] == key and isinstance(caught.value, ValueError)
