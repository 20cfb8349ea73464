"""What a plant counts on a replayed stream: escapes, false alarms and unsure per 1,000 after warm-up, time to
learn, the records file and the timeline picture."""

import json
from dataclasses import replace

import numpy as np
import pytest

from musc_online.prequential import (
    FrameOutcome,
    hindsight_band,
    hindsight_bound,
    summarise,
    time_to_learn,
    timeline_png,
    write_records,
)


def _outcome(
    index: int, truth: int, label: str, corrected: str | None = None, known_defect: str | None = None
) -> FrameOutcome:
    kind = "crack" if truth else "good"
    score = {"ok": 0.1, "unsure": 0.5, "defect": 0.9}[label] + 0.001 * index
    return FrameOutcome(index, f"f{index}", truth, kind, label, score, None, 0.3, 0.7, False, known_defect, corrected)


STREAM = [
    _outcome(0, 1, "ok"),  # warm-up: not counted
    _outcome(1, 0, "defect"),  # warm-up
    _outcome(2, 0, "ok"),
    _outcome(3, 0, "defect", corrected="ok"),  # a false alarm, corrected
    _outcome(4, 1, "ok"),  # an escape
    _outcome(5, 0, "unsure", known_defect="crack"),  # the known-defect guard fired on a good part
    _outcome(6, 1, "defect", corrected="defect"),
    _outcome(7, 0, "ok"),  # the first good part decided ok after the ok correction at 3
    _outcome(8, 1, "unsure"),
    _outcome(9, 1, "defect"),  # the first crack decided defect after the correction at 6
]


def test_summary_counts_after_warm_up_per_1000():
    summary = summarise(STREAM, warmup=2)
    assert (summary["frames"], summary["good"], summary["defective"]) == (8, 4, 4)
    assert summary["escapes"] == 1 and summary["escapes_per_1000"] == pytest.approx(125.0)
    assert summary["false_alarms"] == 1 and summary["false_alarms_per_1000_good"] == pytest.approx(250.0)
    assert summary["unsure"] == 2 and summary["unsure_per_1000"] == pytest.approx(250.0)
    assert summary["unsure_good_per_1000_good"] == pytest.approx(250.0)
    assert summary["known_defect_on_good_per_1000_good"] == pytest.approx(250.0)
    assert summary["corrections"] == 2
    assert summary["auroc"] == pytest.approx(0.75)  # the escape (4) scores below every good part but one
    assert summary["last_provisional"] is None
    early = [replace(o, provisional=o.index in (0, 1, 3)) for o in STREAM]
    assert summarise(early, warmup=2)["last_provisional"] == 3  # the warm-up counts too: calibration may outlast it


def test_time_to_learn_is_frames_to_the_next_look_alike_decided_right():
    assert time_to_learn(STREAM) == [4, 3]
    assert summarise(STREAM, warmup=2)["time_to_learn_median"] == pytest.approx(3.5)
    never = [_outcome(0, 1, "ok", corrected="defect"), _outcome(1, 1, "ok")]
    assert time_to_learn(never) == []


def test_records_and_timeline_are_written(tmp_path):
    records = write_records(STREAM, tmp_path / "out" / "records.jsonl")
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == len(STREAM) and rows[4] == {**rows[4], "truth": 1, "label": "ok", "frame_id": "f4"}
    picture = timeline_png(STREAM, tmp_path / "t.png", "test stream", {5: "changeover"}, warmup=2)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_timeline_shows_the_judges_own_opinion_below_when_the_line_has_judges(tmp_path):
    import matplotlib.image  # matplotlib is imported where pictures are drawn only

    judged = [replace(o, judge_score=o.score / 2, judge_band_low=0.2, judge_band_high=0.4) for o in STREAM]
    judged[0] = replace(judged[0], judge_score=None, judge_band_low=None, judge_band_high=None)  # not calibrated yet
    plain = matplotlib.image.imread(timeline_png(STREAM, tmp_path / "plain.png", "one opinion"))
    both = matplotlib.image.imread(timeline_png(judged, tmp_path / "both.png", "two opinions " * 30))
    assert both.shape[0] > 1.5 * plain.shape[0] and both.shape[1] == plain.shape[1]


def _scored(index: int, truth: int, label: str, score: float) -> FrameOutcome:
    return replace(_outcome(index, truth, label), score=score)


def test_hindsight_bound_sends_on_as_many_good_parts_as_the_line_did():
    # The line passed two defects (0.6, 0.4) and sent on two good parts (0.7 defect, 0.2 unsure); the best single
    # threshold sending on two good parts lies just above 0.2: it catches both, and only the defect at 0.05 passes.
    frames = [
        _scored(0, 0, "defect", 0.7),
        _scored(1, 0, "unsure", 0.2),
        _scored(2, 0, "ok", 0.5),
        _scored(3, 0, "ok", 0.1),
        _scored(4, 1, "ok", 0.6),
        _scored(5, 1, "ok", 0.4),
        _scored(6, 1, "defect", 0.9),
        _scored(7, 1, "unsure", 0.05),  # sent to a person by the line: no escape of the line's
    ]
    assert hindsight_bound(frames) == {"escapes": 1, "good_sent_on": 2, "ratio": 2.0}
    summary = summarise(frames, warmup=0)
    assert summary["hindsight_escapes"] == 1 and summary["hindsight_escapes_per_1000"] == pytest.approx(125.0)
    assert summary["good_sent_on_per_1000_good"] == pytest.approx(500.0)
    tied = [_scored(0, 0, "defect", 0.5), _scored(1, 0, "ok", 0.3), _scored(2, 1, "ok", 0.3)]
    assert hindsight_bound(tied) == {"escapes": 1, "good_sent_on": 1, "ratio": 1.0}  # a tie with a good part passes


def test_hindsight_bound_is_zero_when_every_good_part_was_sent_on():
    frames = [_scored(0, 0, "unsure", 0.1), _scored(1, 1, "ok", 0.05), _scored(2, 1, "defect", 0.9)]
    assert hindsight_bound(frames) == {"escapes": 0, "good_sent_on": 1, "ratio": None}  # the line let one through
    assert hindsight_bound(frames[:1] + frames[2:])["ratio"] == 1.0


def test_hindsight_band_at_the_targets_sends_the_overlap_to_a_person():
    # 100 good parts scoring 0.00 .. 0.99 and 10 defects scoring 0.50 .. 0.95: at most 2 good parts in 100 may be
    # rejected (high just above the third-highest good score, 0.97) and no defect may pass (low at the lowest
    # defect, 0.50), so the parts from 0.50 up to 0.97 go to a person: 48 good ones and all 10 defects.
    goods = [_scored(i, 0, "ok", i / 100) for i in range(100)]
    defects = [_scored(100 + i, 1, "ok", 0.5 + 0.05 * i) for i in range(10)]
    band = hindsight_band(goods + defects, escapes_per_1000=0.0, false_alarms_per_1000_good=20.0)
    assert band["low"] == 0.5 and 0.97 < band["high"] < 0.971
    assert band["unsure"] == 58 and band["unsure_per_1000"] == pytest.approx(1000 * 58 / 110)
    # Scores that separate need nobody: the band closes on the gap.
    apart = goods[:50] + [_scored(200 + i, 1, "ok", 0.9 + 0.001 * i) for i in range(5)]
    assert hindsight_band(apart)["unsure"] == 0


def test_hindsight_band_is_the_fewest_unsure_of_every_pair_of_thresholds():
    rng = np.random.default_rng(0)
    for trial in range(20):
        truth = rng.random(120) < 0.2
        scores = np.round(rng.normal(truth * 0.8, 1.0), 1)  # rounded: ties between good and defective parts
        frames = [_scored(i, int(t), "ok", float(s)) for i, (t, s) in enumerate(zip(truth, scores, strict=True))]
        escapes, false_alarms = (5.0, 20.0) if trial % 2 else (40.0, 100.0)
        band = hindsight_band(frames, escapes, false_alarms)
        cuts = np.concatenate([np.unique(scores), [np.inf]])
        fewest = min(
            int(np.sum((scores >= low) & (scores < high)))
            for low in cuts
            for high in cuts
            if low <= high
            and 1000 * np.sum(truth & (scores < low)) / len(scores) <= escapes
            and 1000 * np.sum(~truth & (scores >= high)) / np.sum(~truth) <= false_alarms
        )
        assert band["unsure"] == fewest and band["low"] <= band["high"]
        assert 1000 * np.sum(truth & (scores < band["low"])) / len(scores) <= escapes
        assert 1000 * np.sum(~truth & (scores >= band["high"])) / np.sum(~truth) <= false_alarms


def test_hindsight_band_needs_nobody_without_both_kinds_of_part():
    goods = [_scored(i, 0, "ok", i / 10) for i in range(10)]
    defects = [_scored(10 + i, 1, "ok", i / 10) for i in range(10)]
    for frames in ([], goods, defects):
        band = hindsight_band(frames)
        assert band["unsure"] == 0 and band["low"] <= band["high"]
    # Targets allowing every defect to pass need nobody either; fractional ones are not rounded one short.
    assert hindsight_band(goods + defects, escapes_per_1000=500.0)["unsure"] == 0
    many = [_scored(i, 0, "ok", i / 90000) for i in range(90000)]
    # 0.7 per 1,000 of 90,000 good parts allows 63 false alarms: the cut lies just above the 64th highest score
    assert hindsight_band(many, false_alarms_per_1000_good=0.7)["high"] == pytest.approx((90000 - 64) / 90000)
