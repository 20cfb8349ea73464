"""Control commands on a running in-process line: the band, snapshots on a timer, judges from a folder."""

from __future__ import annotations

import time

import numpy as np

from ..conftest import LINE
from ..inprocess import InProcessLine, frame, good_parts


def test_the_band_is_set_and_recalibrated_live_recorded_and_shown(tmp_path):
    line = InProcessLine(tmp_path / "lines")
    rng = np.random.default_rng(0)
    line.send({f"f{i}": frame(rng) for i in range(24)})  # window 8, then 8 steady scores calibrate the band
    line.answers(24)
    calibrated = line.call("band")["result"]["band"]
    assert calibrated["source"] == "calibrated"

    reply = line.call("band", action="set", low=0.1, high=0.2, operator="ann")["result"]
    assert reply["band"] == {"low": 0.1, "high": 0.2, "source": "operator"} and reply["before"] == calibrated
    line.send({"after-set": frame(rng)})
    assert line.answers(25)["after-set"]["band"] == [0.1, 0.2]

    refused = line.call("band", action="set", low=0.5, high=0.4)
    assert not refused["ok"] and "low <= high" in refused["error"]

    again = line.call("band", action="recalibrate", operator="bob")["result"]["band"]
    assert again["source"] == "calibrated"
    status = line.call("status")["result"]
    assert status["scorer"]["band"] == again
    assert [e["kind"] for e in status["band_events"]] == ["band_recalibrate", "band_set"]
    assert "bob" in status["band_events"][0]["message"]
    line.stop()

    restarted = InProcessLine(tmp_path / "lines")
    assert restarted.call("band")["result"]["band"] == again
    restarted.stop()


def test_recalibrating_with_too_few_normal_scores_says_what_is_missing(tmp_path):
    line = InProcessLine(tmp_path / "lines")
    reply = line.call("band", action="recalibrate")
    assert not reply["ok"] and "at least 8 normal scores" in reply["error"]
    line.stop()


def test_the_state_is_saved_on_its_timer(tmp_path):
    line = InProcessLine(tmp_path / "lines", **{"pipeline.snapshot_every_s": 0.3})
    state = tmp_path / "lines" / f"line-{LINE}" / "state" / "state.json"
    line.send({"f0": frame(np.random.default_rng(1))})
    line.answers(1)
    deadline = time.monotonic() + 10
    while not (state.is_file() and '"f0"' in state.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"f0"' in state.read_text()  # the window holding f0 was saved without any stop or command
    line.stop()


def test_judges_are_reloaded_from_a_folder_and_recorded(tmp_path):
    good = good_parts(tmp_path / "good", 3, seed=2)
    line = InProcessLine(tmp_path / "lines")
    assert line.call("reload_judges", folder=str(good))["result"] == {"added": 3}
    assert line.call("reload_judges", folder=str(good))["result"] == {"added": 0}  # already there
    assert sorted(j.judge_id for j in line.store.judges(LINE)) == [f"seed/part{i}" for i in range(3)]
    missing = line.call("reload_judges")
    assert not missing["ok"] and "judges_dir" in missing["error"]
    line.stop()


def test_a_judge_bank_moves_to_another_line_through_the_store_and_a_foreign_one_is_refused(tmp_path):
    good = good_parts(tmp_path / "good", 3, seed=3)
    source = InProcessLine(tmp_path / "source")
    source.call("judges", action="add", folder=str(good))
    exported = source.call("judges", action="export", store_name="widget-v1")["result"]
    assert exported == {"exported": 3, "store_name": "widget-v1"}
    (summary,) = source.store.judge_banks()
    assert (summary.name, summary.from_line, summary.judges) == ("widget-v1", LINE, 3)
    source.stop()

    other = InProcessLine(tmp_path / "other")  # another line (here another data folder) on the same store
    assert other.call("judges", action="import", store_name="widget-v1")["result"] == {"imported": 3}
    assert sorted(j["id"] for j in other.call("judges", action="list")["result"]) == [f"seed/part{i}" for i in range(3)]
    missing = other.call("judges", action="import", store_name="nope")
    assert not missing["ok"] and "no judge bank 'nope'" in missing["error"] and "widget-v1" in missing["error"]
    other.stop()

    foreign = InProcessLine(tmp_path / "foreign", **{"model.image_size": 32})
    refused = foreign.call("judges", action="import", store_name="widget-v1")
    assert not refused["ok"]
    assert "judge bank 'widget-v1' in the store was built with other settings" in refused["error"]
    assert "image_size: saved 64, expected 32" in refused["error"]
    foreign.stop()


def test_judge_bank_files_stay_inside_the_lines_exchange_folders(tmp_path):
    good = good_parts(tmp_path / "good", 3, seed=4)
    shared = tmp_path / "shared"
    line = InProcessLine(tmp_path / "lines", **{"paths.export_dir": str(shared)})
    line_dir = tmp_path / "lines" / f"line-{LINE}"
    exports = line_dir / "exports"
    line.call("judges", action="add", folder=str(good))
    exports.mkdir()
    (exports / "out").symlink_to(tmp_path)  # a link inside that leads out
    store_db = line_dir / "store.db"
    before = store_db.read_bytes() if store_db.exists() else None
    for path in (tmp_path / "bank.zip", exports / ".." / "store.db", exports / "out" / "bank.zip", "/etc/bank.zip"):
        refused = line.call("judges", action="export", file=str(path))
        assert not refused["ok"], path
        assert f"judges export: {path} is outside the folders" in refused["error"]
        assert str(exports) in refused["error"] and str(shared) in refused["error"]
    assert not (tmp_path / "bank.zip").exists() and not list(tmp_path.glob("*.zip"))
    assert before is None or store_db.read_bytes()[:16] == before[:16]  # still the SQLite store, not a zip

    mine = line.call("judges", action="export", file=str(exports / "bank.zip"))["result"]
    assert mine == {"exported": 3, "file": str(exports / "bank.zip")}
    assert line.call("judges", action="export", file=str(shared / "v1" / "bank.zip"))["ok"]
    (tmp_path / "copy.zip").write_bytes((exports / "bank.zip").read_bytes())
    refused = line.call("judges", action="import", file=str(tmp_path / "copy.zip"))
    assert not refused["ok"] and f"judges import: {tmp_path / 'copy.zip'} is outside the folders" in refused["error"]
    line.call("judges", action="remove", id="seed/part1")
    assert line.call("judges", action="import", file=str(shared / "v1" / "bank.zip"))["result"] == {"imported": 1}
    line.stop()
