"""Multi-node behaviour on one machine: a Ray cluster of several nodes (`ray.cluster_utils.Cluster`)
in its own process (tests/training/multinode_driver.py), so it never meets the test session's Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = [pytest.mark.slow]

# the GCS declares a node dead after 3 missed 1-s health checks (Ray's defaults: 5 missed 3-s checks,
# ~15 s in which the training run can only wait)
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
# nodes here die without a drain notice (no cloud autoscaler): Train's preemption watcher, one more
# actor per run that only polls for drains, has nothing to see (~6 s of CPU over the scenarios)
NO_DRAIN_WATCHER = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def test_training_survives_losing_a_node_and_sweep_trials_spread_across_nodes(tiny_shards, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "training" / "multinode_driver.py"), str(tmp_path),
         str(tiny_shards / "train"), str(tiny_shards / "val")],
        capture_output=True, text=True, timeout=900, env={**os.environ, **FAST_NODE_DEATH, **NO_DRAIN_WATCHER},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))

    trained = out["train"]
    assert len(trained["worker_nodes"]) >= 2  # the 2 workers ran on different nodes
    assert trained["removed"]["node_id"] in trained["worker_nodes"]  # a node hosting a worker was removed
    assert trained["restarts"] >= 1  # Train restored the run from its last checkpoint ...
    assert trained["global_step"] == trained["expected_steps"] and trained["epoch"] == 2  # ... and lost no step
    assert trained["storage"].startswith(str(tmp_path)) and trained["checkpoints"]  # in shared storage

    swept = out["sweep"]
    assert swept["trials"] == 2 and not swept["errors"]
    assert len(set(swept["worker_nodes"]) & set(swept["cluster_worker_nodes"])) == 2
