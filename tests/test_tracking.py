"""MLflow tracking without Ray: the local store, one run per training run, reopened on resume."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from vfn.platform.config import load_config
from vfn.platform.tracking import MetricLogger, start_run, tracking_uri


def test_local_store_run_params_tags_and_resume(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(None, [f"output.root={tmp_path}", "output.name=r", "model.design=joint",
                             "tracking.tags.team=vision"])
    uri = tracking_uri(cfg)
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = MlflowClient(uri)
    run_dir = tmp_path / "runs" / "r"
    run_id = start_run(cfg, run_dir, tags={"gflops_per_view": "1.5"})
    logger = MetricLogger(uri, run_id, flush_every=1000)
    logger.log({"train/loss": 2.0}, step=1)
    logger.log({"train/loss": 1.5}, step=2)
    logger.flush()

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["model.design"] == "joint" and run.data.params["optim.lr"] == "0.1"
    assert run.data.params["derived.global_batch"] == str(cfg.global_batch)
    assert run.data.tags["team"] == "vision" and run.data.tags["gflops_per_view"] == "1.5"
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [2.0, 1.5]

    # a resumed training run (same run directory) continues the same MLflow run
    assert start_run(cfg, run_dir) == run_id
    assert client.get_run(run_id).data.tags["vfn.resumed"] == "true"

    # nesting under a sweep's parent run
    sweep = parent.create_run(run.info.experiment_id, run_name="sweep").info.run_id
    child = start_run(cfg.with_overrides({"output.name": "trial"}), tmp_path / "runs" / "trial", parent_run_id=sweep,
                      run_name="trial 1")
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == sweep


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    cfg = load_config(None, [f"output.root={tmp_path}"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(cfg) == "http://mlflow.example:5000"
    assert tracking_uri(cfg.with_overrides({"tracking.tracking_uri": "sqlite:///x.db"})) == "sqlite:///x.db"
