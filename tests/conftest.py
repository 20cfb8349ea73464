"""Shared fixtures: where the reference material lives, and offline settings for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
GOLDEN_FILE = SHARED / "golden" / "musc_small.npz"
MVTEC_ROOT = SHARED / "data" / "mvtec_ad"

# Nothing may download during tests: a missing weight must fail at once, not hang on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def golden_path() -> Path:
    if not GOLDEN_FILE.is_file():
        pytest.skip(f"reference figures not found at {GOLDEN_FILE} (the ../shared folder beside the checkout)")
    return GOLDEN_FILE


@pytest.fixture(scope="session")
def golden(golden_path: Path) -> dict[str, np.ndarray]:
    with np.load(golden_path) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def mvtec_root() -> Path:
    if not (MVTEC_ROOT / "bottle" / "test").is_dir():
        pytest.skip(f"MVTec AD bottle data not found at {MVTEC_ROOT} (the ../shared folder beside the checkout)")
    return MVTEC_ROOT


def _shared_category(dataset: str, category: str) -> Path:
    """The root of ``../shared/data/<dataset>`` when it holds ``category``; skip the test otherwise."""
    root = SHARED / "data" / dataset
    if not (root / category / "test").is_dir():
        pytest.skip(f"{dataset} {category} not found at {root / category} (the ../shared folder beside the checkout)")
    return root


@pytest.fixture(scope="session")
def screw_root() -> Path:
    """MVTec AD root holding ``screw``: image-level truth only, no ground_truth folder."""
    return _shared_category("mvtec_ad", "screw")


@pytest.fixture(scope="session")
def mpdd_root() -> Path:
    """MPDD root holding ``metal_plate``, with masks under ground_truth/defective."""
    return _shared_category("mpdd", "metal_plate")


POSTGRES_ENV = "TEST_POSTGRES_URL"  # an admin URL of a PostgreSQL server tests may create databases on (.ci/run)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a new database on the PostgreSQL server (skipped without one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'line-3' / 'store.db'}"
        return
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"no PostgreSQL server to test on: set {POSTGRES_ENV} to an admin URL (.ci/run starts one)")
    from daemon.store import scratch_database

    with scratch_database(admin_url, prefix="musc_test") as url:
        yield url
