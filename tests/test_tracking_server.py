"""Shared tracking: a real `mlflow server` on 127.0.0.1, a tiny run logged to it over HTTP and read
back; an unreachable server fails at start, before Ray or any training compute."""

from __future__ import annotations

import time

import pytest

from conftest import free_port, running_mlflow_server, tiny_experiment


@pytest.fixture
def mlflow_server(tmp_path):
    with running_mlflow_server(tmp_path, str(tmp_path / "server-artifacts")) as uri:
        yield uri


def test_unreachable_server_fails_before_ray_starts(tmp_path, tiny_shards):
    import ray

    from vfn.platform.config import validate
    from vfn.platform.tracking import TrackingServerUnreachable
    from vfn.platform.train import run_training

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = validate(tiny_experiment(tiny_shards, tmp_path, tracking={"tracking_uri": closed},
                                   output={"root": str(tmp_path), "name": "nowhere"}))
    was_running = ray.is_initialized()
    start = time.time()
    with pytest.raises(TrackingServerUnreachable, match=f"{closed} is unreachable"):
        run_training(cfg, progress=False)
    assert time.time() - start < 30  # no minutes of client retries
    assert ray.is_initialized() == was_running  # Ray was not started for it
    assert not list((tmp_path / "runs" / "nowhere").glob("checkpoint_*"))


@pytest.mark.ray
@pytest.mark.slow
def test_training_logs_to_a_real_mlflow_server(ray_session, mlflow_server, tiny_shards, tmp_path):
    from mlflow.tracking import MlflowClient

    from vfn.platform.config import validate
    from vfn.platform.train import run_training

    cfg = validate(tiny_experiment(tiny_shards, tmp_path, optim={"epochs": 1},
                                   tracking={"tracking_uri": mlflow_server, "experiment": "remote"},
                                   output={"root": str(tmp_path), "name": "remote-run"}))
    result = run_training(cfg, progress=False)
    assert result.tracking_uri == mlflow_server

    client = MlflowClient(tracking_uri=mlflow_server)  # read back over HTTP
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.embed_dim"] == "8" and run.data.params["data.num_classes"] == "4"
    assert run.data.tags["design"] == "parallel" and float(run.data.tags["gflops_per_view"]) > 0
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_top1")] == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts and "learning_curves.png" in artifacts
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store
