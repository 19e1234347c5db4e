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


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Train/val Parquet shards of a tiny synthetic set (24 videos, 4 classes, 32x32): `root/train`, `root/val`."""
    from vfn.platform.data.shards import write_shards
    from vfn.platform.data.synth import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_shards")
    synth = make_synthetic_dataset(root / "synth", 24, seed=3, num_classes=4, size=32, num_frames=8)
    write_shards(synth.train_manifest, str(root / "train"), root=synth.root, progress=False)
    write_shards(synth.val_manifest, str(root / "val"), root=synth.root, progress=False)
    return root


def tiny_experiment(data: Path, root: Path, **sections) -> dict:
    """A raw experiment config that trains a tiny model on `tiny_shards` in seconds."""
    raw = {
        "model": {"embed_dim": 8, "depths": [1, 1, 1, 1], "drop_path_rate": 0.0},
        "data": {"train": str(data / "train"), "val": str(data / "val"), "num_classes": 4, "num_frames": 4,
                 "input_size": 32, "decode_cpus": 0.5},
        "augment": {"mixup_prob": 0.0},
        "optim": {"optimizer": "adamw", "lr": 1e-3, "lr_scale_batch": None, "epochs": 2, "warmup_epochs": 0,
                  "min_lr": 0.0, "batch_size": 4},
        "eval": {"num_clips": 1, "num_crops": 1, "batch_size": 4},
        "output": {"root": str(root)},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw
