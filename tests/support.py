"""What tests share besides fixtures (those are in `conftest.py`): the paths to ../shared, a tiny
experiment config that trains in seconds, Ray-state probes and a local MLflow server. Tests import
it as `tests.support`."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VFN_SHARED", REPO.parent / "shared"))
VIDEOS = SHARED / "videos"
REFERENCE = SHARED / "fixtures" / "reference"
LABELS = SHARED / "labels"


def created_actors(class_name: str) -> int:
    """Actors of `class_name` the test session's Ray has created (dead ones included)."""
    import ray
    from ray.util.state import list_actors

    return len(list_actors(address=ray.get_runtime_context().gcs_address, filters=[("class_name", "=", class_name)],
                           limit=10_000, raise_on_missing_output=False))


def live_placement_groups() -> dict[str, dict]:
    """Placement groups of the test session's Ray that are not removed, by id."""
    import ray.util

    return {pg_id: pg for pg_id, pg in ray.util.placement_group_table().items() if pg["state"] != "REMOVED"}


def tiny_experiment(shards: Path | None, root: Path | None, /, **sections) -> dict:
    """A raw experiment config that trains a tiny model in seconds: on the `shards/train` and
    `shards/val` shards (`tiny_shards`), writing under `root`; either may be None (a config for the
    step alone). `sections` update the sections they name (`optim={"epochs": 3}`). The one builder
    of tiny configs the tests share."""
    raw = {
        "model": {"embed_dim": 8, "depths": [1, 1, 1, 1], "drop_path_rate": 0.0},
        "data": {"num_classes": 4, "num_frames": 4, "input_size": 32, "decode_cpus": 0.5,
                 **({"train": str(shards / "train"), "val": str(shards / "val")} if shards else {})},
        "augment": {"mixup_prob": 0.0},
        "optim": {"optimizer": "adamw", "lr": 1e-3, "lr_scale_batch": None, "epochs": 2, "warmup_epochs": 0,
                  "min_lr": 0.0, "batch_size": 4},
        "eval": {"num_clips": 1, "num_crops": 1, "batch_size": 4},
        "output": {"root": str(root)} if root else {},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(workdir: Path, artifacts: str, env: dict | None = None, args: tuple[str, ...] = ()):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend in `workdir`, artifacts proxied to
    `artifacts`, a path or s3://...; `args` more options, e.g. `--app-name basic-auth`); yields its
    http URI. Without MLflow's job runner (huey consumers for GenAI jobs, which vfn never submits):
    five more processes, ~20 s of CPU per test."""
    port = free_port()
    log = open(workdir / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}", "--artifacts-destination", artifacts,
         "--workers", "1", *args],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(workdir / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
