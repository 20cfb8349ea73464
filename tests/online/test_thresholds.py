import math

import numpy as np
import pytest

from musc_online.online.settings import ThresholdSettings
from musc_online.online.thresholds import GUMBEL_MAD, UNSET, GumbelTail, ThresholdPolicy, calibrate
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


def test_the_gumbel_tail_recovers_its_law_and_its_mad_constant_holds():
    law = np.random.default_rng(1).gumbel(0.36, 0.02, 20_000)
    tail = GumbelTail.fit(law)
    assert tail.location == pytest.approx(0.36, abs=0.001) and tail.scale == pytest.approx(0.02, rel=0.03)
    standard = np.random.default_rng(2).gumbel(0.0, 1.0, 200_000)
    assert np.median(np.abs(standard - np.median(standard))) == pytest.approx(GUMBEL_MAD, rel=0.01)
    assert tail.per_1000(tail.above(2.0)) == pytest.approx(2.0)


def test_a_target_band_from_maxima_keeps_its_rates_where_a_normal_tail_would_not():
    """Image scores are maxima: a band set from 300 known-good ones for 2 false alarms and 20 flagged per 1,000
    good parts gives about that on fresh parts (the median over 20 lines); a normal tail with the same median
    and robust spread gives several times the false alarms."""
    settings = ThresholdSettings(method="target", false_alarms_per_1000=2.0, flagged_per_1000=20.0)
    false_alarms, flagged, normal = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        known_good, fresh = rng.gumbel(0.36, 0.02, 300), rng.gumbel(0.36, 0.02, 50_000)
        band = calibrate(known_good, settings)
        false_alarms.append(1000 * np.mean(fresh >= band.high))
        flagged.append(1000 * np.mean(fresh >= band.low))
        centre = np.median(known_good)
        normal_high = centre + 2.878 * 1.4826 * np.median(np.abs(known_good - centre))  # z(0.998) spreads
        normal.append(1000 * np.mean(fresh >= normal_high))
    assert 1.5 <= np.median(false_alarms) <= 3.5
    assert 14.0 <= np.median(flagged) <= 28.0
    assert np.median(normal) > 8.0


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


def test_missed_defect_sends_its_look_alikes_to_a_person_and_wins_over_a_conflicting_ok():
    policy = ThresholdPolicy()
    base = policy.calibrate(_normal_scores())
    missed = base.low - 0.05
    policy.add_label("ok", missed + 0.01, is_defect=False)
    policy.add_label("defect", missed, is_defect=True)
    band = policy.band
    assert band.decide(missed) == "unsure" and band.low == missed
    assert band.high == base.high  # good parts above a low-scoring defect are not rejected: a person decides
    assert policy.moved_by == 1  # the defect; the ok verdict alone would not move it (below low)


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
