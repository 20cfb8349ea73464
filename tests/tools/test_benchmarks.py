"""The benchmark scripts run unattended: --help, and a tiny run of each on the random test backbone (bench_batch,
bench_online and bench_daemon: in tools/gpu_check.sh --dry-run, tests/tools/test_gpu_check.py)."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TOOLS = Path(__file__).resolve().parents[2] / "tools"
POSTGRES_ENV = "TEST_POSTGRES_URL"  # an admin URL of a PostgreSQL server (tests/conftest.py, .ci/run)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOLS / script), *args], capture_output=True, text=True, timeout=300, check=False
    )


LIBRARIES = ("bench_common.py", "line_harness.py")  # imported by the scripts, not run


@pytest.mark.parametrize("script", sorted(p.name for p in TOOLS.glob("*.py") if p.name not in LIBRARIES))
def test_help(script, monkeypatch, capsys):
    """Run as ``python tools/SCRIPT --help`` runs it (its folder first on the path), but in this process: a new one
    would spend seconds importing torch per script. The tiny runs (here, test_gpu_check.py) start them as processes."""
    monkeypatch.syspath_prepend(str(TOOLS))
    monkeypatch.setattr(sys, "argv", [str(TOOLS / script), "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(TOOLS / script), run_name="__main__")
    assert exited.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.slow
def test_soak_tiny_run_passes_its_checks(tmp_path):
    out = tmp_path / "s.json"
    result = _run(
        "soak.py",
        *("--frames", "240", "--backbone", "test_random_vit", "--size", "64", "--window", "8", "--image-px", "96"),
        *("--slow-rate", "20", "--fast-rate", "200", "--mark-every-s", "2", "--max-files", "20"),
        *("--max-age-ms", "300", "--json", str(out)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    checks = figures["checks"]
    assert checks.pop("memory_flat") is None  # no daemon lives the two minutes it takes to judge its memory
    assert all(checks.values())
    frames = figures["frames"]
    # The camera goes on while the killed line restarts (seconds: a new process imports torch), so the frames
    # it sent meanwhile reach the new line older than the 300 ms budget: shed, each told so in time.
    assert frames["late"] > 0 and figures["late_answered_after_due_ms"]["max"] <= 100
    assert sum(frames["malformed"].values()) == 7
    assert figures["corrections"]["marked"] > 0
    assert [exit for _, exit in figures["daemon_exits"]] == [-9, 0]


def test_bench_plant_tiny_run(tmp_path):
    """Two lines on one PostgreSQL database; corrections written into the store are all applied."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"no PostgreSQL server to run on: set {POSTGRES_ENV} (.ci/run starts one)")
    out = tmp_path / "p.json"
    tiny = ["--lines", "2", "--backbone", "test_random_vit", "--size", "64", "--window", "4", "--image-px", "64"]
    result = _run(
        "bench_plant.py", *tiny, "--seconds", "4", "--corrections", "4", "--store-url", admin_url, "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert set(figures["per_line"]) == {"1", "2"}
    assert all(line["frames_per_second"] > 0 and line["refusals"] == 0 for line in figures["per_line"].values())
    assert figures["store_write_ms"]["writes"] > 0 and figures["store_write_ms"]["p99"] > 0
    effect = figures["correction_to_effect_ms"]
    assert effect["made"] == effect["applied"] == 4 and 0 < effect["p50"] <= effect["p99"]
    assert figures["settings"]["store"] == "postgresql" and set(figures["daemon_exit_codes"].values()) == {0}


@pytest.mark.realdata
def test_bench_streams_tiny_run(tmp_path, mvtec_root):
    """Two short streams through the three scorers, with the hindsight bound, a Markdown table and a timeline."""
    out = tmp_path / "s.json"
    result = _run(
        "bench_streams.py",
        "--data",
        str(mvtec_root.parent),
        "--categories",
        "bottle",
        "--streams",
        "rate10",
        "bad_batch",
        "--length",
        "32",  # the shortest bad_batch of bottle: 8 warm-up frames, its 22 broken_small images, a good part each side
        "--backbone",
        "test_random_vit",
        "--size",
        "64",
        "--window",
        "8",
        "--layers",  # a choice of layers reaches the backbone (the defaults table compares blocks on streams)
        "1",
        "3",
        "--json",
        str(out),
        "--timelines",
        str(tmp_path / "t"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["settings"]["layers"] == "[1, 3]"
    streams = report["categories"]["bottle"]
    assert set(streams) == {"rate10", "bad_batch"}
    runs = streams["bad_batch"]
    assert {"paper", "earlier", "earlier + operator", "today", "today + operator"} <= set(runs)
    figures = [r for k, r in runs.items() if k != "description"]
    assert all(r["hindsight_escapes_per_1000"] >= 0 for r in figures)
    assert all(0 <= r["hindsight_unsure_at_targets_per_1000"] <= 1000 for r in figures)
    assert "| bottle | bad_batch | today |" in out.with_suffix(".md").read_text()
    assert (tmp_path / "t" / "bottle_bad_batch.png").stat().st_size > 0


@pytest.mark.parametrize("server", ["sqlite", "postgresql"])
def test_bench_store_tiny_run(tmp_path, server):
    """A few thousand frames: before and after figures, counts that add up, and a prune that removes frames."""
    url = "sqlite" if server == "sqlite" else os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_ENV}")
    out = tmp_path / "st.json"
    args = ("--store-url", url, "--frames", "3000", "--repeats", "2", "--prune-batches", "2", "--json", str(out))
    result = _run("bench_store.py", *args)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["store"] == server
    assert 1490 <= figures["pruned_frames"] <= 1500  # the older half, less the few frames the timed marks corrected
    assert figures["outcomes"]["status:decided"] + figures["outcomes"]["status:refused"] == 3000
    for phase, names in (("before_sql_ms", {"counts", "queue", "mark_lookups"}), ("after_call_ms", {"mark"})):
        assert names <= set(figures[phase]) and all(figures[phase][n]["runs"] == 2 for n in names)


def _three_made_up_categories(data: Path) -> Path:
    """bottle, screw (no masks) and metal_plate in the real ones' places: 4 good and 2 defective 40 px images each."""
    rng = np.random.default_rng(0)
    for dataset, category, masks in (
        ("mvtec_ad", "bottle", True),
        ("mvtec_ad", "screw", False),
        ("mpdd", "metal_plate", True),
    ):
        folder = data / dataset / category
        for kind, count in (("good", 4), ("defective", 2)):
            (folder / "test" / kind).mkdir(parents=True)
            for i in range(count):
                picture = rng.integers(100, 130, (40, 40, 3), dtype=np.uint8)
                mask = np.zeros((40, 40), np.uint8)
                mask[5 + 10 * i : 12 + 10 * i, 8:20] = 255 if kind == "defective" else 0
                picture[mask > 0] = 250
                Image.fromarray(picture).save(folder / "test" / kind / f"{i:03d}.png")
                if masks and kind == "defective":
                    (folder / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(folder / "ground_truth" / kind / f"{i:03d}_mask.png")
    return data


def test_bench_categories_tiny_run(tmp_path):
    """Three made-up categories in the real ones' places: one table row each, screw's pixel figures n/a."""
    _three_made_up_categories(tmp_path / "data")
    out = tmp_path / "c.json"
    args = ("--data", str(tmp_path / "data"), "--backbone", "test_random_vit", "--size", "32", "--json", str(out))
    result = _run("bench_categories.py", *args)
    assert result.returncode == 0, result.stderr
    categories = json.loads(out.read_text())["categories"]
    assert list(categories) == ["bottle", "screw", "metal_plate"]
    assert categories["screw"]["pixel_auroc"] is None and categories["screw"]["recall_by_size"] is None
    assert [b["regions"] for b in categories["metal_plate"]["recall_by_size"]["bins"]] == [1, 1, 0]
    screw_row = next(line for line in result.stdout.splitlines() if line.startswith("| screw |"))
    assert screw_row.count("n/a") == 6  # pixel AUROC, pixel AP, PRO and the three recall thirds


def test_bench_tiles_tiny_run(tmp_path):
    """Untiled and tiled runs of every category, with the cost of each as a multiple of the untiled one."""
    data = _three_made_up_categories(tmp_path / "data")
    out = tmp_path / "t.json"
    args = ("--data", str(data), "--backbone", "test_random_vit", "--size", "32", "--json", str(out))
    result = _run("bench_tiles.py", *args)
    assert result.returncode == 0, result.stderr
    categories = json.loads(out.read_text())["categories"]
    assert list(categories["bottle"]) == ["untiled", "2x2 position", "3x3 position"]
    assert categories["screw"]["2x2 pooled"]["tiles"]["mode"] == "pooled"
    assert categories["screw"]["2x2 pooled"]["recall_by_size"] is None
    assert categories["metal_plate"]["3x3 position"]["recall_by_size"]["bins"][0]["regions"] == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("| bottle |")]
    assert len(rows) == 3 and rows[0].endswith("| 1.0 |")  # the untiled run costs 1.0 x itself
