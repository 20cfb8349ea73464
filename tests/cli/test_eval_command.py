import json
import shutil

from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.metrics import METRIC_KEYS, PIXEL_KEYS

runner = CliRunner()


def test_eval_writes_table_json_and_heatmaps(tiny_mvtec, tmp_path):
    out = tmp_path / "out.json"
    heatmaps = tmp_path / "maps"
    result = runner.invoke(
        app,
        [
            "eval",
            "--root",
            str(tiny_mvtec),
            "--backbone",
            "test_random_vit",
            "--size",
            "32",
            "--device",
            "cpu",
            "--json",
            str(out),
            "--heatmaps",
            str(heatmaps),
            "--heatmap-norm",
            "set",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "gadget" in result.stdout and "widget" in result.stdout and "mean" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["categories"]) == {"gadget", "widget"}
    for figures in (*report["categories"].values(), report["mean"]):
        assert all(0.0 <= figures[key] <= 1.0 for key in METRIC_KEYS)
    assert report["settings"]["backbone"] == "test_random_vit"
    pictures = sorted(heatmaps.rglob("*.png"))
    assert len(pictures) == 14
    with Image.open(pictures[0]) as first:
        assert first.size == (96, 48)  # image and overlay side by side


def test_a_category_without_masks_reports_pixel_figures_as_not_available(tiny_mvtec, tmp_path):
    shutil.rmtree(tiny_mvtec / "gadget" / "ground_truth")
    out = tmp_path / "out.json"
    args = ["eval", "--root", str(tiny_mvtec), "--backbone", "test_random_vit", "--size", "32", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--region-fpr", "0.05", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "n/a" in result.stdout and "Recall of defect regions by size" in result.stdout
    report = json.loads(out.read_text())
    gadget, widget = report["categories"]["gadget"], report["categories"]["widget"]
    assert all(gadget[key] is None for key in PIXEL_KEYS) and gadget["recall_by_size"] is None
    assert 0.0 <= gadget["image_auroc"] <= 1.0
    assert all(0.0 <= widget[key] <= 1.0 for key in PIXEL_KEYS)
    assert report["mean"]["pixel_auroc"] == widget["pixel_auroc"]  # the mean of the categories that have it
    recall = widget["recall_by_size"]
    assert recall["fpr"] == 0.05 == report["settings"]["region_fpr"] and recall["observed_fpr"] <= 0.05
    assert [(b["regions"], b["area_min"]) for b in recall["bins"]] == [(1, 100), (1, 100), (0, None)]
    refused = runner.invoke(app, [*args, "--region-fpr", "1.5"])
    assert refused.exit_code == 2 and "--region-fpr" in refused.output


def test_missing_root_is_refused_with_its_path(tmp_path):
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["eval", "--root", str(missing), "--category", "bottle", "--device", "cpu"])
    assert result.exit_code == 2
    assert str(missing) in result.output


def test_bad_list_option_names_the_option(tiny_mvtec):
    result = runner.invoke(app, ["eval", "--root", str(tiny_mvtec), "--r-list", "1,x", "--device", "cpu"])
    assert result.exit_code == 2
    assert "--r-list" in result.output
