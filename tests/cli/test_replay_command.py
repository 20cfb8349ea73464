import json

import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.metrics import METRIC_KEYS

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
def test_bottle_stream_keeps_batch_accuracy(mvtec_root, tmp_path):
    """Issue 3's acceptance: shuffled (seed 0), window 64, judges from train/good, efficientnet_lite0 at 320."""
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
