"""Seed judges calibrate the combined band by the score a steady frame would get, not by their mutual scores."""

import copy
from dataclasses import replace

import numpy as np
import pytest

from musc_online.backbones import create_backbone
from musc_online.online.judges import change_product, remove_judge, seed_judges
from musc_online.online.scorer import SEEDS_PER_FRAME, OnlineScorer
from musc_online.online.settings import OnlineSettings, ThresholdSettings
from musc_online.online.turns import part_of, turned_id

SETTINGS = OnlineSettings(
    window=4, judges_per_frame=3, admission="all", calibration_scores=8, thresholds=ThresholdSettings(min_scores=4)
)


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test_random_vit")


def _parts(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(90, 140, (64, 64, 3)).astype(np.int16)
    return [np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def _seeded(backbone, seeds: int = 10) -> OnlineScorer:
    scorer = OnlineScorer(backbone, SETTINGS)
    seed_judges(scorer, _parts(seeds, seed=1), [f"seed{i}" for i in range(seeds)])
    return scorer


def test_seeds_stay_pending_and_the_band_provisional_until_the_window_is_full(backbone):
    scorer = _seeded(backbone)
    assert scorer.calibration.pending == [f"seed{i}" for i in range(10)]
    assert scorer.calibration.band().source == "provisional"  # from the seeds' mutual scores meanwhile
    assert scorer.calibration.judge_band().source == "calibrated"  # the judges' own opinion needs no window
    frames = _parts(12, seed=2)
    for i, frame in enumerate(frames[: SETTINGS.window]):
        assert scorer.score(frame, f"f{i}").provisional
    assert len(scorer.calibration.pending) == 10 - SEEDS_PER_FRAME  # the frame that filled the window was steady
    for i, frame in enumerate(frames[SETTINGS.window : SETTINGS.window + 2]):
        scorer.score(frame, f"g{i}")
    assert scorer.calibration.pending == []
    assert scorer.calibration.band().source == "calibrated"
    assert len(scorer.calibration.known_good) == 10
    assert scorer.calibration.known_good != pytest.approx(scorer.calibration.seeded)


def test_scoring_a_batch_leaves_the_seeds_to_the_caller_who_may_take_them_one_at_a_time(backbone):
    scorer = _seeded(backbone)
    frames = _parts(SETTINGS.window, seed=2)
    scorer.score_many(frames, [f"f{i}" for i in range(len(frames))])
    assert scorer.window.full and len(scorer.calibration.pending) == 10  # the answers need not wait for seeds
    assert scorer.score_due_seeds(0, limit=1) == 1  # an idle line: one seed, no frame
    assert scorer.score_due_seeds(2) == 2 * SEEDS_PER_FRAME
    assert scorer.score_due_seeds(3) == 10 - 1 - 2 * SEEDS_PER_FRAME  # no more than are pending
    assert scorer.calibration.pending == [] and scorer.score_due_seeds(1) == 0
    assert scorer.calibration.band().source == "calibrated"


def test_a_seed_scores_exactly_as_the_same_image_would_score_as_a_frame(backbone):
    scorer = _seeded(backbone)
    for i, frame in enumerate(_parts(SETTINGS.window - 1, seed=2)):
        scorer.score(frame, f"f{i}")
    assert scorer.calibration.pending  # the window is one frame short of full
    as_frame = copy.deepcopy(scorer)
    image = _parts(10, seed=1)[0]
    scorer.score(_parts(1, seed=3)[0], "filler")  # fills the window, then scores seed0 .. seed3
    steady = scorer.calibration.known_good[0]

    remove_judge(as_frame, "seed0")  # the frame must not meet itself among the judges
    as_frame.score(_parts(1, seed=3)[0], "filler")
    decision = as_frame.score(image, "seed0-again")  # scored before it joins the window
    assert decision.references == {"voters": SETTINGS.window, "judges": SETTINGS.judges_per_frame}
    assert decision.score == pytest.approx(steady, rel=1e-5)


def test_a_seed_removed_or_voting_before_its_turn_is_dropped_not_scored(backbone):
    scorer = _seeded(backbone, seeds=6)
    remove_judge(scorer, "seed2")
    for i, frame in enumerate(_parts(SETTINGS.window + 2, seed=2)):
        scorer.score(frame, f"f{i}")
    assert scorer.calibration.pending == []
    assert len(scorer.calibration.known_good) == 5


def test_recalibrate_scores_pending_seeds_once_the_window_is_full(backbone):
    scorer = _seeded(backbone)
    with pytest.raises(ValueError, match="at least 4"):
        OnlineScorer(backbone, SETTINGS).recalibrate()
    early = scorer.recalibrate()  # no window yet: the mutual scores stand in
    assert scorer.calibration.pending and early.source == "calibrated"
    for i, frame in enumerate(_parts(SETTINGS.window, seed=2)):
        scorer.score(frame, f"f{i}")
    scorer.recalibrate()
    assert scorer.calibration.pending == [] and len(scorer.calibration.known_good) == 10


def test_a_product_change_calibrates_afresh_from_the_new_judges_once_the_window_refills(backbone):
    scorer = _seeded(backbone)
    for i, frame in enumerate(_parts(SETTINGS.window + 3, seed=2)):
        scorer.score(frame, f"f{i}")
    assert scorer.calibration.band().source == "calibrated"
    assert change_product(scorer, _parts(8, seed=5), [f"new{i}" for i in range(8)]) == 8
    assert len(scorer.window) == 0 and scorer.calibration.band().source == "provisional"
    for i, frame in enumerate(_parts(SETTINGS.window + 2, seed=6)):
        scorer.score(frame, f"n{i}")
    assert scorer.calibration.band().source == "calibrated"
    assert len(scorer.calibration.known_good) == 8


def test_turned_copies_judge_but_only_the_seeds_calibrate(backbone):
    scorer = OnlineScorer(backbone, replace(SETTINGS, judge_turns=4))
    assert seed_judges(scorer, _parts(6, seed=1), [f"seed{i}" for i in range(6)]) == 6
    assert len(scorer.judges) == 24 and turned_id("seed0", 90.0) in scorer.judges
    assert scorer.judges.score(turned_id("seed0", 90.0)) == scorer.judges.score("seed0")  # RsCIN's scale
    assert scorer.calibration.pending == [f"seed{i}" for i in range(6)]
    assert len(scorer.calibration.known_good_judged) == 6
    feature = scorer.judges.image_features(["seed0"])[0]
    picked = scorer._pick_judges(feature, exclude="seed0")
    assert picked and all(part_of(judge_id) != "seed0" for judge_id in picked)  # a seed does not vouch for itself
    remove_judge(scorer, "seed0")
    assert len(scorer.judges) == 20 and not any(part_of(j) == "seed0" for j in scorer.judges.ids())
    remove_judge(scorer, turned_id("seed1", 180.0))  # one turn alone
    assert len(scorer.judges) == 19 and "seed1" in scorer.judges


def test_with_turns_a_seed_still_scores_exactly_as_the_same_image_would_as_a_frame(backbone):
    settings = replace(SETTINGS, judge_turns=3)
    scorer = OnlineScorer(backbone, settings)
    seed_judges(scorer, _parts(10, seed=1), [f"seed{i}" for i in range(10)])
    for i, frame in enumerate(_parts(settings.window - 1, seed=2)):
        scorer.score(frame, f"f{i}")
    as_frame = copy.deepcopy(scorer)
    scorer.score(_parts(1, seed=3)[0], "filler")  # fills the window, then scores seed0 .. seed3
    remove_judge(as_frame, "seed0")  # neither the seed nor its turns may judge it
    as_frame.score(_parts(1, seed=3)[0], "filler")
    decision = as_frame.score(_parts(10, seed=1)[0], "seed0-again")
    assert decision.score == pytest.approx(scorer.calibration.known_good[0], rel=1e-5)
