"""``--care-mask`` of ``eval`` and ``replay``: image scores from the care area alone, and a mask that cannot lie over
the images refused naming the option."""

from __future__ import annotations

import inspect
import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_online import app

runner = CliRunner()
TINY_MODEL = ["--backbone", "test_random_vit", "--size", "32", "--device", "cpu"]


def _mask(path, width: int, height: int, left: int):
    """A mask caring for the columns from ``left`` on."""
    mask = np.zeros((height, width), np.uint8)
    mask[:, left:] = 255
    Image.fromarray(mask).save(path)
    return path


def test_eval_hands_the_care_area_to_the_evaluation_and_records_it(tiny_mvtec, tmp_path, monkeypatch):
    """Image scores over a care area are checked in tests/test_roi.py (batch) and tests/online/test_roi_real.py."""
    import musc_online.evaluation as evaluation

    real, given = evaluation.evaluate_category, []

    def evaluate(*args, **kwargs):
        given.append(inspect.signature(real).bind(*args, **kwargs).arguments.get("care"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_category", evaluate)
    right = _mask(tmp_path / "right.png", 96, 96, 48)  # any size of the images' aspect
    out = tmp_path / "eval.json"
    args = ["eval", "--root", str(tiny_mvtec), "--category", "widget", *TINY_MODEL, "--care-mask", str(right)]
    result = runner.invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert len(given) == 1 and given[0].at(2).tolist() == [[False, True], [False, True]]
    assert json.loads(out.read_text())["settings"]["care_mask"] == str(right)


def test_replay_takes_a_care_mask_and_refuses_one_of_another_aspect(tiny_mvtec, tmp_path):
    args = ["replay", "--root", str(tiny_mvtec), "--category", "gadget", "--window", "4", *TINY_MODEL]
    out = tmp_path / "replay.json"
    mask = _mask(tmp_path / "m.png", 48, 48, 24)
    replayed = runner.invoke(app, [*args, "--care-mask", str(mask), "--json", str(out)])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(out.read_text())["settings"]["care_mask"] == str(tmp_path / "m.png")

    wide = runner.invoke(app, [*args, "--care-mask", str(_mask(tmp_path / "wide.png", 96, 48, 24))])
    assert wide.exit_code == 2
    said = " ".join(wide.output.replace("│", " ").split())  # the error box wraps its lines
    assert "--care-mask" in said and "is 96 x 48 px, the frames 48 x 48 px: their aspects differ" in said
