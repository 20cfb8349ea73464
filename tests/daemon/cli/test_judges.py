"""Curating a running line's judge bank through `musc-online judges`."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from musc_online.backbones import create_backbone
from musc_online.online.judges import seed_judges
from musc_online.online.persistence import export_judges
from musc_online.online.scorer import OnlineScorer
from musc_online.online.settings import OnlineSettings
from musc_online.synthetic import synthetic_product

from ..conftest import LINE, DaemonProcess

runner = CliRunner()


def _good_parts(folder: Path, count: int, rng: np.random.Generator) -> Path:
    """A folder of ``count`` synthetic good parts, part0.png onwards."""
    folder.mkdir()
    for i in range(count):
        Image.fromarray(synthetic_product(rng, 128)).save(folder / f"part{i}.png")
    return folder


def _start_line(tmp_path: Path, monkeypatch, extra_env: dict[str, str] | None = None) -> DaemonProcess:
    """A running line daemon whose MUSC_* settings the CLI under test sees too."""
    daemon = DaemonProcess(tmp_path / "lines", extra_env=extra_env).start()
    for key, value in daemon.env.items():
        if key.startswith("MUSC_"):
            monkeypatch.setenv(key, value)
    return daemon


@pytest.mark.slow
def test_add_list_export_remove_import_and_refuse_a_foreign_bank(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    good = _good_parts(tmp_path / "good", 4, rng)
    daemon = _start_line(tmp_path, monkeypatch)

    def judges(*args: str):
        return runner.invoke(app, ["judges", *args, "--line", str(LINE)])

    assert json.loads(judges("add", str(good)).stdout) == {"added": 4}
    listing = judges("list")
    assert listing.exit_code == 0 and "seed/part2" in listing.stdout
    exports = tmp_path / "lines" / f"line-{LINE}" / "exports"  # bank files stay in the line's exchange folder
    bank = exports / "bank.zip"
    assert json.loads(judges("export", str(bank)).stdout)["exported"] == 4
    outside = judges("export", str(tmp_path / "bank.zip"))
    assert outside.exit_code == 2 and "outside the folders this line exchanges files through" in outside.output
    assert judges("remove", "seed/part2").exit_code == 0
    assert daemon.call("status")["result"]["scorer"]["judges"] == 3
    assert json.loads(judges("import", str(bank)).stdout) == {"imported": 1}
    assert daemon.call("status")["result"]["scorer"]["judges"] == 4

    foreign = OnlineScorer(create_backbone("test_random_vit"), OnlineSettings(window=4))
    seed_judges(foreign, [synthetic_product(rng, 64) for _ in range(3)], ["x", "y", "z"])
    export_judges(foreign, exports / "foreign.zip")
    refused = judges("import", str(exports / "foreign.zip"))
    assert refused.exit_code == 2
    assert "backbone" in refused.output
    assert daemon.call("status")["result"]["scorer"]["judges"] == 4
    assert judges("remove", "nobody").exit_code == 2
    assert daemon.stop() == 0


@pytest.mark.slow
def test_a_line_with_judge_turns_seeds_each_part_turned_and_removes_it_whole(tmp_path, monkeypatch):
    good = _good_parts(tmp_path / "good", 3, np.random.default_rng(1))
    daemon = _start_line(tmp_path, monkeypatch, {"MUSC_ONLINE__JUDGE_TURNS": "4"})
    added = runner.invoke(app, ["judges", "add", str(good), "--line", str(LINE)])
    assert json.loads(added.stdout) == {"added": 3}  # parts, not bank items
    scorer = daemon.call("status")["result"]["scorer"]
    assert (scorer["judge_parts"], scorer["judges"]) == (3, 12)  # each part at 0, 90, 180 and 270 degrees
    monkeypatch.setenv("COLUMNS", "200")  # the status table on one line per row
    assert "3 parts (12 with their turned copies)" in runner.invoke(app, ["status", "--line", str(LINE)]).stdout
    assert runner.invoke(app, ["judges", "remove", "seed/part1", "--line", str(LINE)]).exit_code == 0
    scorer = daemon.call("status")["result"]["scorer"]
    assert (scorer["judge_parts"], scorer["judges"]) == (2, 8)
    assert daemon.stop() == 0
    restarted = DaemonProcess(tmp_path / "lines", extra_env={"MUSC_ONLINE__JUDGE_TURNS": "4"}).start()
    assert restarted.call("status")["result"]["scorer"]["judges"] == 8  # the turns come back with the snapshot
    assert restarted.stop() == 0
