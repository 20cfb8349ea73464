import json

import numpy as np
import pytest
import torch

from musc_online.backbones import create_backbone
from musc_online.batch import score_batch, score_patches
from musc_online.online.corrections import UnknownFrameError, confirm_defect, confirm_normal, undo
from musc_online.online.judges import remove_judge, seed_judges
from musc_online.online.maps import frame_maps
from musc_online.online.persistence import export_judges, import_judges, load, save
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings
from musc_online.rscin import rscin
from musc_online.settings import MuscSettings

GRIDS = ((8, 8, 16), (4, 4, 24))  # a fine and a coarse layer, as a CNN gives


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test_random_vit")


def _frames(count: int, seed: int = 0, defect_every: int = 0):
    """Synthetic per-layer maps of a 'product' (shared pattern + noise); some frames carry a bright blob."""
    gen = torch.Generator().manual_seed(seed)
    pattern = [torch.randn(1, c, h, w, generator=gen) for h, w, c in GRIDS]
    frames = []
    for i in range(count):
        maps = [p + 0.3 * torch.randn(p.shape, generator=gen) for p in pattern]
        if defect_every and i % defect_every == defect_every - 1:
            maps[0][..., 2:4, 2:4] += 4.0 * torch.randn(maps[0].shape[1], 1, 1, generator=gen)
        feature = torch.nn.functional.normalize(torch.randn(12, generator=gen) * 0.1 + 1.0, dim=0)
        frames.append((maps, feature))
    return frames


def _scorer(backbone, **kwargs) -> OnlineScorer:
    settings = {"window": 8, "judges_per_frame": 0, "admission": "all", **kwargs}
    return OnlineScorer(backbone, OnlineSettings(**settings))


def test_patch_scores_equal_batch_msm_of_frame_and_window(backbone):
    frames = _frames(12)
    scorer = _scorer(backbone)
    for i, (maps, feature) in enumerate(frames[:-1]):
        scorer.score_features(f"f{i}", maps, feature, (64, 64))
    window_ids = scorer.window.ids
    assert len(window_ids) == 8
    maps, feature = frames[-1]
    decision = scorer.score_features("last", maps, feature, (64, 64))

    members = [frames[int(i[1:])][0] for i in window_ids] + [maps]
    batch_maps = [torch.cat([m[layer] for m in members]) for layer in range(len(GRIDS))]
    expected = score_patches(batch_maps, MuscSettings())[-1]
    np.testing.assert_allclose(decision.patch_scores, expected.numpy(), rtol=1e-4, atol=1e-6)
    assert decision.references == {"voters": 8, "judges": 0}


def test_the_share_the_line_flags_counts_final_decisions_only_and_survives_a_restart(backbone, tmp_path):
    scorer = _scorer(backbone, calibration_scores=8)
    assert scorer.stats()["flagged_per_1000_final"] is None  # nothing final yet
    decisions = [scorer.score_features(f"f{i}", m, f, (64, 64)) for i, (m, f) in enumerate(_frames(40, 1, 4))]
    final = [d for d in decisions if not d.provisional]
    flagged = [d for d in final if d.label != "ok"]
    assert final and flagged and len(final) < len(decisions)  # the count must tell final from provisional
    assert scorer.stats()["flagged_per_1000_final"] == pytest.approx(1e3 * len(flagged) / len(final))
    save(scorer, tmp_path / "state")
    state_file = tmp_path / "state" / "state.json"
    old = json.loads(state_file.read_text())
    del old["counts"]["final_flagged"]  # a snapshot from before the count
    state_file.write_text(json.dumps(old))
    restored = _scorer(backbone, calibration_scores=8)
    load(restored, tmp_path / "state")
    assert restored.counts == {**scorer.counts, "final_flagged": 0}


def test_online_rscin_with_minmax_equals_reference_when_window_is_the_batch(backbone):
    frames = _frames(10, seed=3)
    layer_maps = [torch.cat([m[layer] for m, _ in frames]) for layer in range(len(GRIDS))]
    features = torch.stack([f for _, f in frames])
    batch = score_batch(layer_maps, features, 32)
    reference = rscin(batch.image_scores, features, (1, 2, 3))

    scorer = _scorer(backbone, window=9, rscin_normalisation="minmax")
    x = 4
    for i, (maps, feature) in enumerate(frames):
        if i != x:
            sets, _ = scorer.scoring_sets(maps)
            scorer.window.admit(f"f{i}", sets, feature, float(batch.image_scores[i]))
    online = scorer.rescore(float(batch.image_scores[x]), frames[x][1])
    assert online == pytest.approx(float(reference[x]), rel=1e-4)


def test_confirm_defect_removes_the_vote_at_once_and_undo_restores_it(backbone):
    frames = _frames(8, seed=1)
    scorer = _scorer(backbone)
    for i, (maps, feature) in enumerate(frames[:6]):
        scorer.score_features(f"f{i}", maps, feature, (64, 64))
    correction = confirm_defect(scorer, "f2", label="scratch")
    assert "f2" not in scorer.window
    assert correction.changes["evicted"]
    decision = scorer.score_features("f6", *frames[6], (64, 64))
    assert decision.references["voters"] == 5
    assert scorer.defects.label("f2") == "scratch"

    undo(scorer, correction.correction_id)
    assert "f2" in scorer.window and "f2" not in scorer.defects


def test_confirm_normal_promotes_to_judge_and_readmits(backbone):
    frames = _frames(12, seed=2, defect_every=4)
    scorer = _scorer(backbone, admission="ok")
    scorer.set_band(0.0, 0.0)  # everything is a defect: nothing is admitted
    for i, (maps, feature) in enumerate(frames[:3]):
        assert scorer.score_features(f"f{i}", maps, feature, (64, 64)).label == "defect"
    assert len(scorer.window) == 0
    correction = confirm_normal(scorer, "f1")
    assert "f1" in scorer.judges and "f1" in scorer.window
    assert correction.changes == {"judge_added": True, "readmitted": True}
    assert scorer.thresholds.band.decide(correction.score) == "ok"
    with pytest.raises(ValueError, match="already a judge"):
        confirm_normal(scorer, "f1")
    undo(scorer, correction.correction_id)
    assert "f1" not in scorer.judges and "f1" not in scorer.window


def test_an_ok_verdict_lifts_both_bands_only_while_its_frame_votes(backbone):
    rng = np.random.default_rng(4)
    images = [rng.integers(100, 130, (64, 64, 3), dtype=np.uint8) for _ in range(16)]
    scorer = OnlineScorer(backbone, OnlineSettings(window=3, judges_per_frame=2))
    seed_judges(scorer, images[:8], [f"seed{i}" for i in range(8)])
    scorer.score(images[8], "checked")
    correction = confirm_normal(scorer, "checked")
    lifts = (scorer.calibration.thresholds.labels, scorer.calibration.judge_thresholds.labels)
    assert all(correction.correction_id in labels for labels in lifts)
    for i, image in enumerate(images[9:12]):  # three more voters push the confirmed frame out of the window
        scorer.score(image, f"later{i}")
    assert "checked" not in scorer.window and "checked" in scorer.judges  # it still judges, but lifts nothing
    assert not any(correction.correction_id in labels for labels in lifts)


def test_unknown_frame_is_named(backbone):
    scorer = _scorer(backbone)
    with pytest.raises(UnknownFrameError, match="nope"):
        confirm_normal(scorer, "nope")


def test_judges_fill_the_young_window_and_survive_save_and_load(backbone, tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(100, 130, (64, 64, 3), dtype=np.uint8) for _ in range(10)]
    scorer = OnlineScorer(backbone, OnlineSettings(window=4, judges_per_frame=2))
    assert seed_judges(scorer, images[:6], [f"seed{i}" for i in range(6)]) == 6
    first = scorer.score(images[6], "frame0")
    assert first.references == {"voters": 0, "judges": 6}
    scorer.score(images[7], "frame1")
    confirm_defect(scorer, "frame1", label="dent")
    save(scorer, tmp_path / "state")

    restored = OnlineScorer(backbone, OnlineSettings(window=4, judges_per_frame=2))
    recovered = load(restored, tmp_path / "state")
    assert recovered["judges"] == 6 and recovered["known_defects"] == 1
    assert restored.judges.ids() == scorer.judges.ids()
    assert restored.window.ids == scorer.window.ids
    assert repr(restored.thresholds.band) == repr(scorer.thresholds.band)
    assert json.dumps(restored.calibration.state()) == json.dumps(scorer.calibration.state())
    again = restored.score(images[8], "frame2")
    same = scorer.score(images[8], "frame2")
    assert again.score == pytest.approx(same.score, rel=1e-5)
    assert restored.corrections.keys() == scorer.corrections.keys()


def test_nearest_known_defect_is_named(backbone):
    frames = _frames(6, seed=5)
    scorer = _scorer(backbone, defect_match=0.99)
    for i, (maps, feature) in enumerate(frames[:4]):
        scorer.score_features(f"f{i}", maps, feature, (64, 64))
    confirm_defect(scorer, "f0", label="crack")
    maps, _ = frames[4]
    decision = scorer.score_features("x", maps, frames[0][1], (64, 64))
    assert decision.nearest_defect is not None
    assert decision.nearest_defect.label == "crack" and decision.nearest_defect.frame_id == "f0"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window": 0}, "window"), ({"admission": "some"}, "admission"), ({"rscin_normalisation": "z"}, "normalisation")],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineSettings(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_scorer_matches_cpu_scorer(backbone):
    frames = _frames(12, seed=7)
    cpu, gpu = (
        _scorer(backbone),
        OnlineScorer(backbone, OnlineSettings(window=8, judges_per_frame=0, admission="all"), "cuda"),
    )
    for i, (maps, feature) in enumerate(frames):
        expected = cpu.score_features(f"f{i}", maps, feature, (64, 64))
        got = gpu.score_features(f"f{i}", [m.cuda() for m in maps], feature.cuda(), (64, 64))
        np.testing.assert_allclose(got.patch_scores, expected.patch_scores, atol=1e-4)
        assert got.score == pytest.approx(expected.score, abs=1e-4)


def test_judges_export_and_import_between_scorers_of_the_same_setup(backbone, tmp_path):
    rng = np.random.default_rng(4)
    images = [rng.integers(90, 140, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    source = OnlineScorer(backbone, OnlineSettings(window=4))
    seed_judges(source, images, [f"good{i}" for i in range(5)])
    assert export_judges(source, tmp_path / "bank.zip") == 5

    target = OnlineScorer(backbone, OnlineSettings(window=4))
    seed_judges(target, images[:1], ["good0"])
    assert import_judges(target, tmp_path / "bank.zip") == ["good1", "good2", "good3", "good4"]
    assert target.judges.ids() == source.judges.ids()
    remove_judge(target, "good3")
    assert "good3" not in target.judges


def test_judges_from_another_backbone_are_refused_and_nothing_changes(backbone, tmp_path):
    rng = np.random.default_rng(5)
    images = [rng.integers(90, 140, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    other = OnlineScorer(create_backbone("test_random_timm_vit"), OnlineSettings(window=4))
    seed_judges(other, images, ["a", "b", "c"])
    export_judges(other, tmp_path / "other.zip")
    scorer = OnlineScorer(backbone, OnlineSettings(window=4))
    with pytest.raises(ValueError, match="backbone"):
        import_judges(scorer, tmp_path / "other.zip")
    assert scorer.judges is None or len(scorer.judges) == 0
    (tmp_path / "not-a-bank.zip").write_text("hello")
    with pytest.raises(ValueError, match="not a judge bank export"):
        import_judges(scorer, tmp_path / "not-a-bank.zip")


def test_a_voter_that_is_also_a_judge_gives_its_own_row_to_the_judges_map_after_the_ring_wraps(backbone):
    """A full window is scored against its buffer in slot order, which after wrapping differs from admission order."""
    frames = _frames(6, seed=3)
    scorer = _scorer(backbone, window=3)
    for i, (maps, feature) in enumerate(frames[:5]):
        scorer.score_features(f"f{i}", maps, feature, (64, 64))
    assert scorer.window.ids == ["f2", "f3", "f4"] and scorer.window.block_rows({"f3"}) != [1]  # wrapped
    image_feature, score = scorer.window.voter("f3")
    scorer.judges.add("f3", image_feature, scorer.window.features_of("f3"), score=score)  # confirmed good, still votes

    maps, _ = frames[5]
    sets, grids = scorer.scoring_sets(maps)
    got = frame_maps(scorer, sets, grids, [], scorer._judge_rows([])).judges_map
    alone = frame_maps(scorer, sets, grids, ["f3"], [0], voting=False).judges_map
    torch.testing.assert_close(got, alone)
