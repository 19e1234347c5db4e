"""Multi-node behaviour on one machine: a Ray cluster of several nodes (`ray.cluster_utils.Cluster`)
in its own process (tests/multinode_driver.py), so it never meets the test session's Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow]


def drive(mode: str, workdir, shards) -> dict:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "multinode_driver.py"), mode, str(workdir),
         str(shards / "train"), str(shards / "val")],
        capture_output=True, text=True, timeout=900,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_training_spans_two_nodes_and_survives_losing_one(tiny_shards, tmp_path):
    out = drive("train", tmp_path, tiny_shards)
    assert len(out["worker_nodes"]) >= 2  # the 2 workers ran on different nodes
    assert out["removed"]["node_id"] in out["worker_nodes"]  # a node hosting a worker was removed
    assert out["restarts"] >= 1  # Train restored the run from its last checkpoint ...
    assert out["global_step"] == out["expected_steps"] and out["epoch"] == 3  # ... and lost no step
    assert out["storage"].startswith(str(tmp_path)) and out["checkpoints"]  # checkpoints in shared storage


def test_sweep_trials_spread_across_nodes(tiny_shards, tmp_path):
    out = drive("sweep", tmp_path, tiny_shards)
    assert out["trials"] == 2 and not out["errors"]
    assert len(set(out["worker_nodes"]) & set(out["cluster_worker_nodes"])) == 2
