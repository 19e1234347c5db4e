"""Shared tracking: an unreachable server fails at start, before Ray or any training compute.

A run logged over HTTP to a real `mlflow server` on 127.0.0.1 and read back is part of
`tests/runtime/test_storage.py` (its runs track to such a server, with artifacts in the bucket):
one Ray run proves both."""

from __future__ import annotations

import time

import pytest

from tests.support import free_port, tiny_experiment


def test_unreachable_server_fails_before_ray_starts(tmp_path, tiny_shards):
    import ray

    from vfn.config.schema import config_from_dict
    from vfn.tracking.runs import TrackingServerUnreachable
    from vfn.training.driver import run_training

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = config_from_dict(tiny_experiment(tiny_shards, tmp_path, tracking={"tracking_uri": closed},
                                   output={"root": str(tmp_path), "name": "nowhere"}))
    was_running = ray.is_initialized()
    start = time.time()
    with pytest.raises(TrackingServerUnreachable, match=f"{closed} is unreachable"):
        run_training(cfg, progress=False)
    assert time.time() - start < 30  # no minutes of client retries
    assert ray.is_initialized() == was_running  # Ray was not started for it
    assert not list((tmp_path / "runs" / "nowhere").glob("checkpoint_*"))
