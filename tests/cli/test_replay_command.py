import json
import shutil

import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.metrics import METRIC_KEYS, PIXEL_KEYS

runner = CliRunner()


def test_replay_reports_online_and_batch_figures(tiny_mvtec, tmp_path):
    out = tmp_path / "replay.json"
    judges = tiny_mvtec / "widget" / "test" / "good"
    result = runner.invoke(
        app,
        [
            "replay",
            "--root",
            str(tiny_mvtec),
            "--category",
            "gadget",
            "--backbone",
            "test_random_vit",
            "--size",
            "32",
            "--window",
            "4",
            "--judges",
            str(judges),
            "--operator-corrects",
            "0.5",
            "--compare-batch",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Decisions against the ground truth" in result.stdout and "frames/s" in result.stdout
    report = json.loads(out.read_text())
    for section in ("online", "batch"):
        assert all(0.0 <= report[section][key] <= 1.0 for key in METRIC_KEYS)
    assert sum(v for k, v in report["decisions"].items() if k != "provisional") == 7
    assert report["latency_ms"]["total"]["p50"] > 0
    assert report["settings"]["window"] == 4


TINY_MODEL = ("--backbone", "test_random_vit", "--size", "32", "--device", "cpu")


def test_replay_of_a_category_without_masks_reports_pixel_figures_as_not_available(tiny_mvtec, tmp_path):
    shutil.rmtree(tiny_mvtec / "gadget" / "ground_truth")
    out = tmp_path / "replay.json"
    args = ["replay", "--root", str(tiny_mvtec), "--category", "gadget", "--window", "4", "--compare-batch"]
    result = runner.invoke(app, [*args, *TINY_MODEL, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "n/a" in result.stdout
    report = json.loads(out.read_text())
    for section in ("online", "batch"):
        assert all(report[section][key] is None for key in PIXEL_KEYS)
        assert 0.0 <= report[section]["image_auroc"] <= 1.0


def test_stream_is_staged_in_the_layout_asked_for(tiny_mvtec, tmp_path):
    """--layout folder: good/ and scratch/ under one folder, no train split so no judges; unlabelled: refused."""
    labelled = tiny_mvtec / "widget" / "test"  # good/ and scratch/: a labelled folder named 'test'
    out = tmp_path / "stream.json"
    args = ["replay", "--stream", "rate10", "--length", "12", "--window", "4", "--layout", "folder"]
    result = runner.invoke(app, [*args, "--root", str(labelled), "--category", "test", *TINY_MODEL, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "no judges: the folder layout has no train split" in result.output
    report = json.loads(out.read_text())
    assert report["layout"] == "folder" and report["summary"]["frames"] == 12 - 3  # after a 3-frame warm-up
    unlabelled = labelled / "good"
    refused = runner.invoke(app, [*args, "--root", str(unlabelled), "--category", "good", *TINY_MODEL])
    assert refused.exit_code == 2 and "(folder layout) has no defect images" in refused.output


def test_bad_admission_policy_is_refused(tiny_mvtec):
    result = runner.invoke(
        app,
        [
            "replay",
            "--root",
            str(tiny_mvtec),
            "--category",
            "gadget",
            "--admit",
            "some",
            "--backbone",
            "test_random_vit",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2
    assert "admission" in result.output


@pytest.mark.slow
@pytest.mark.realdata
def test_bottle_stream_keeps_batch_accuracy_and_the_batch_meets_the_accuracy_floor(mvtec_root, tmp_path):
    """Issue 3's acceptance: shuffled (seed 0), window 64, judges from train/good, efficientnet_lite0 at 320.

    Also issue 2's: --compare-batch scores all 83 test images as one set with eval's defaults (r {1,3,5}, k {1,2,3},
    the same ``evaluate_category`` call), so its figures are ``eval``'s, bit for bit, checked once here.
    """
    out = tmp_path / "replay.json"
    result = runner.invoke(
        app,
        [
            "replay",
            "--root",
            str(mvtec_root),
            "--category",
            "bottle",
            "--backbone",
            "efficientnet_lite0",
            "--size",
            "320",
            "--window",
            "64",
            "--judges",
            str(mvtec_root / "bottle" / "train" / "good"),
            "--order",
            "shuffled",
            "--seed",
            "0",
            "--compare-batch",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["online"]["image_auroc"] >= 0.99
    assert abs(report["online"]["pixel_auroc"] - report["batch"]["pixel_auroc"]) <= 0.01
    batch = report["batch"]
    assert sum(v for k, v in report["decisions"].items() if k != "provisional") == 83
    assert batch["image_auroc"] >= 0.995
    assert batch["pixel_auroc"] >= 0.973
    assert batch["pixel_ap"] >= 0.68
    assert batch["pro"] >= 0.88
