"""Shared fixtures: ../shared, one Ray session for the whole test run, tiny shards; and the test
processes' share of the cores. Helpers that tests import are in `tests/support.py`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support import SHARED, live_placement_groups


def pytest_configure(config):
    """Under `make test`'s test processes (pytest-xdist), each process's torch gets its share of
    the cores: two processes each running torch's default one thread per core oversubscribe the
    machine, and in-process training tests then ran ~3x slower than alone."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Under `make test`'s N test processes: xdist's `worksteal` hands each process a contiguous
    1/N of this list, then moves tests from the tail of the longest queue to an idle process. The
    `slow` tests (minutes of Ray runs), a module at a time, are dealt round-robin to the heads of
    the N shares, so every process starts on long runs at once and only short tests are left to
    even out at the end (in file order, the long ones met late in one process: one ran alone)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    heads: list[list] = [[] for _ in range(workers)]
    for k, path in enumerate(dict.fromkeys(item.path for item in slow)):  # a module's slow tests together
        heads[k % workers] += [item for item in slow if item.path == path]
    ordered, left = [], len(items)
    for k in range(workers):  # the shares' sizes as worksteal cuts them
        size = left // (workers - k)
        share = heads[k] + fast[:max(0, size - len(heads[k]))]
        fast = fast[len(share) - len(heads[k]):]
        ordered += share
        left -= len(share)
    items[:] = ordered + fast


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED} (set VFN_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray (2 CPUs) for every Ray test: ray.init costs seconds, so it is shared."""
    import ray

    from vfn.runtime.ray_setup import init_ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    init_ray({  # the commands' own set-up: a fresh local instance and its job-wide worker env
        "num_cpus": 2,
        "include_dashboard": True,  # its State API lets Ray Train clean up trials Tune stops
        "log_to_driver": False,
        "_temp_dir": str(Path("/tmp") / f"vfn_ray_{os.getpid()}"),
    })
    yield ray
    # left running until interpreter exit: later tests in the same run reuse it


@pytest.fixture(autouse=True)
def _no_leaked_placement_groups(request):
    """A Ray test that leaves a placement group reserved fails.

    Every Ray test shares one 2-CPU session, and on a cluster a leaked group holds a worker's CPUs
    (or GPU) until the cluster is torn down. Ray Train removes its worker group's asynchronously
    (and a stopped trial's through its PlacementGroupCleaner), so the fixture waits a little first;
    what is still there is removed, so later tests are not starved, and reported as this test's error.
    """
    if "ray_session" not in request.fixturenames:
        yield
        return
    import ray
    import ray.util
    from ray.util.placement_group import PlacementGroup

    before = set(live_placement_groups())
    yield
    deadline = time.monotonic() + 30
    while ((leaked := {k: v for k, v in live_placement_groups().items() if k not in before})
           and time.monotonic() < deadline):
        time.sleep(0.5)
    for pg_id in leaked:
        ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
    if leaked:
        held = [f"{pg['name'] or pg_id[:8]} {pg['state']} {list(pg['bundles'].values())}"
                for pg_id, pg in leaked.items()]
        pytest.fail(f"placement groups still reserved 30 s after the test (now removed): {held}")


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Train/val Parquet shards of a tiny synthetic set (24 videos, 4 classes, 32x32): `root/train`, `root/val`."""
    from vfn.data.ingest import write_shards
    from vfn.data.synth import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_shards")
    synth = make_synthetic_dataset(root / "synth", 24, seed=3, num_classes=4, size=32, num_frames=8)
    write_shards(synth.train_manifest, str(root / "train"), root=synth.root, progress=False)
    write_shards(synth.val_manifest, str(root / "val"), root=synth.root, progress=False)
    return root


