"""Shared fixtures: paths to ../shared and one Ray session for the whole test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VFN_SHARED", REPO.parent / "shared"))
VIDEOS = SHARED / "videos"
REFERENCE = SHARED / "fixtures" / "reference"
LABELS = SHARED / "labels"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED} (set VFN_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray (2 CPUs) for every Ray test: ray.init costs seconds, so it is shared."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray.init(
            num_cpus=2,
            include_dashboard=True,  # its State API lets Ray Train clean up trials Tune stops
            log_to_driver=False,
            _temp_dir=str(Path("/tmp") / f"vfn_ray_{os.getpid()}"),
        )
    yield ray
    # left running until interpreter exit: later tests in the same run reuse it
