"""``eval`` and ``replay`` with tiles: the tile options reach the scorer, bad values are refused naming the option."""

import json

import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.metrics import METRIC_KEYS

runner = CliRunner()
TINY = ["--backbone", "test_random_vit", "--size", "32", "--device", "cpu"]


def test_eval_with_tiles_scores_every_category_and_records_the_tiling(tiny_mvtec, tmp_path):
    out = tmp_path / "tiled.json"
    result = runner.invoke(app, ["eval", "--root", str(tiny_mvtec), *TINY, "--tiles", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["tiles"]["grid"] == 2 and report["settings"]["tiles"]["mode"] == "position"
    for figures in report["categories"].values():
        assert all(0.0 <= figures[key] <= 1.0 for key in METRIC_KEYS)


def test_replay_with_pooled_tiles_decides_every_frame(tiny_mvtec, tmp_path):
    out = tmp_path / "replay.json"
    args = ["replay", "--root", str(tiny_mvtec), "--category", "widget", *TINY, "--window", "3"]
    result = runner.invoke(app, [*args, "--tiles", "2", "--tile-mode", "pooled", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["tiles"]["mode"] == "pooled"
    assert sum(report["decisions"].values()) >= 7


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--tiles", "2", "--tile-size", "16"], "--tile-size"),
        (["--tiles", "2", "--tile-mode", "diagonal"], "--tile-mode"),
        (["--tiles", "2", "--tile-overlap", "0.7"], "--tile-overlap"),
    ],
)
def test_bad_tile_options_are_refused_naming_the_option(tiny_mvtec, options, named):
    result = runner.invoke(app, ["eval", "--root", str(tiny_mvtec), *TINY, *options])
    assert result.exit_code == 2
    assert named in result.output
