"""A line's care area (``[camera]`` care_mask, care_polygons, frame_size): read from files and variables, refused at
start naming the setting when unusable, put on the line's scorer, and said by ``config show`` and ``status``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_daemon import app as daemon_app
from daemon.cli.musc_online import app
from daemon.config import ConfigError, load_config
from daemon.service import LineDaemon, StartError
from daemon.service.recovery import build_scorer

from ..conftest import LINE, free_port_block
from ..inprocess import TINY, InProcessLine

runner = CliRunner()
SQUARE = "[[[0, 0], [31, 0], [31, 63], [0, 63]]]"  # the left half of a 64 x 64 frame


def test_polygons_from_a_variable_reach_the_scorer_and_status_and_config_show_say_what_share_counts(
    tmp_path, monkeypatch
):
    env = {**TINY, "MUSC_PATHS__DATA_DIR": str(tmp_path / "lines")}
    env |= {"MUSC_CAMERA__CARE_POLYGONS": SQUARE, "MUSC_CAMERA__FRAME_SIZE": "[64, 64]"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    shown = runner.invoke(daemon_app, ["config", "show", "--line", str(LINE)])
    assert shown.exit_code == 0, shown.output
    assert "care_polygons = [[[0.0, 0.0], [31.0, 0.0], [31.0, 63.0], [0.0, 63.0]]]  # env MUSC_CAMERA__CARE_POLY" in (
        shown.output
    )
    assert '# care_area = "1 care polygon(s) at 64 x 64: 50.0 % of the frame"' in shown.output

    base = free_port_block(LINE)
    care = {"camera.care_polygons": SQUARE, "camera.frame_size": "[64, 64]", "transport.base_port": base}
    line = InProcessLine(tmp_path / "lines", **care)
    try:
        assert line.daemon.scorer.care_area is not None and line.daemon.scorer.care_area.at(4)[:, :2].all()
        assert line.call("status")["result"]["care_area"] == {
            "source": "1 care polygon(s) at 64 x 64",
            "share": pytest.approx(0.5),
        }
        monkeypatch.setenv("MUSC_TRANSPORT__BASE_PORT", str(base))
        monkeypatch.setenv("COLUMNS", "200")  # the table on one line per row
        status = runner.invoke(app, ["status", "--line", str(LINE)])
        assert status.exit_code == 0, status.output
        assert "1 care polygon(s) at 64 x 64: 50.0 % of the frame" in status.output
    finally:
        line.stop()


def test_an_unusable_care_mask_stops_the_line_at_start_naming_the_setting(tmp_path):
    env = {**TINY, "MUSC_PATHS__DATA_DIR": str(tmp_path / "lines")}
    missing = load_config(LINE, env={**env, "MUSC_CAMERA__CARE_MASK": str(tmp_path / "none.png")})
    where = r"camera.care_mask = .*none\.png\" \(from env MUSC_CAMERA__CARE_MASK\): care mask .* does not exist"
    with pytest.raises(StartError, match=where):
        LineDaemon(missing)
    assert "unusable: camera.care_mask" in missing.derived()["care_area"]  # config show says so too

    Image.fromarray(np.zeros((48, 64), np.uint8)).save(tmp_path / "black.png")
    black = load_config(LINE, env={**env, "MUSC_CAMERA__CARE_MASK": str(tmp_path / "black.png")})
    with pytest.raises(ConfigError, match=r"camera.care_mask = .*black\.png.*the care area is empty"):
        build_scorer(black)

    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(tmp_path / "wide.png")
    squares = {**env, "MUSC_CAMERA__CARE_MASK": str(tmp_path / "wide.png"), "MUSC_CAMERA__FRAME_SIZE": "[64, 64]"}
    with pytest.raises(ConfigError, match=r"wide\.png is 64 x 48 px, the frames 64 x 64 px: their aspects differ"):
        build_scorer(load_config(LINE, env=squares))
