"""A tiled line (``[tiles]``): it decides every frame with a map finer than the whole frame's, keeps frames at the
tiling resolution, and refuses a frame that its tiles cannot cut like its references without losing any."""

from __future__ import annotations

import numpy as np

from ..inprocess import InProcessLine, frame


def test_a_tiled_line_decides_every_frame_and_refuses_a_frame_of_another_tiling_naming_both(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"tiles.tile_size": "64"})  # 128 px frames: 2 x 2 tiles
    assert line.daemon.scorer.settings.tiles.tile_size == 64
    rng = np.random.default_rng(0)
    line.send({f"f{i}": frame(rng, 128) for i in range(6)})
    line.send({"odd": frame(rng, 192)})  # 3 x 3 tiles
    answers = line.answers(7)
    assert all(answers[f"f{i}"]["topic"].endswith("decision") for i in range(6))
    refused = answers["odd"]
    assert refused["code"] == "wrong_shape"
    assert "gives 3 x 3 tiles, but this line's references were cut into 2 x 2" in refused["reason"]
    assert line.daemon.scorer.views.layout.count == 4
    counts = line.quiet()
    assert (counts["decided"], counts["refused"]) == (6, 1)
    line.stop()
