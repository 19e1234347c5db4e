"""MLflow tracking without Ray: the local store, one run per training run, reopened on resume."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from vfn.config.load import load_config
from vfn.errors import ConfigError
from vfn.tracking.figures import plot_confusion, save_figure
from vfn.tracking.runs import (
    MetricLogger,
    default_tracking_uri,
    learning_curves,
    log_figure,
    sqlite_path,
    start_run,
    tracking_uri,
)


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
    logged = client.download_artifacts(run_id, "config.yaml", str(tmp_path))  # the resolved config
    assert load_config(logged).to_dict() == cfg.to_dict()

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


def test_default_tracking_uri_is_shared_and_names_the_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(None, [f"output.root={tmp_path}"])
    assert tracking_uri(cfg) == default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert sqlite_path(default_tracking_uri(tmp_path)) == tmp_path / "mlflow.db"
    assert sqlite_path("http://mlflow.example:5000") is None
    with pytest.raises(ConfigError, match="object storage"):
        default_tracking_uri("s3://bucket/runs")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri(tmp_path) == "http://mlflow.example:5000"


@pytest.fixture(scope="module")
def new_run(tmp_path_factory):
    """A new run in one local store shared by this module's tests (creating a store takes seconds)."""
    root = tmp_path_factory.mktemp("store")
    names = iter(range(10**6))

    def make() -> tuple[str, str]:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            name = f"r{next(names)}"
            cfg = load_config(None, [f"output.root={root}", f"output.name={name}"])
            return tracking_uri(cfg), start_run(cfg, root / "runs" / name)

    return make


def test_large_batches_are_split_by_mlflow(new_run):
    uri, run_id = new_run()
    logger = MetricLogger(uri, run_id, flush_every=10**6)
    for step in range(1001):  # over MLflow's 1000 metrics per request, flushed in one call
        logger.log({"train/loss": 1.0 / (step + 1)}, step=step)
    logger.flush()
    assert len(MlflowClient(uri).get_metric_history(run_id, "train/loss")) == 1001


def test_a_restarted_logger_does_not_repeat_logged_steps(new_run):
    """A worker restored from a checkpoint replays the steps after it: every (metric, step) pair
    stays logged once, and what comes after the last logged step is logged."""
    uri, run_id = new_run()
    first = MetricLogger(uri, run_id)
    for step in range(1, 8):  # killed after step 7; its checkpoint was at step 4
        first.log({"train/loss": 1.0, "train/lr": 0.1}, step=step)
    first.log({"epoch/epoch": 1}, step=1)
    first.flush()
    again = MetricLogger(uri, run_id)
    for step in range(5, 11):
        again.log({"train/loss": 2.0, "train/lr": 0.1}, step=step)
    for epoch in (2, 3):
        again.log({"epoch/epoch": epoch}, step=epoch)
    again.flush()
    client = MlflowClient(uri)
    loss = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in loss] == list(range(1, 11))
    assert [m.value for m in loss] == [1.0] * 7 + [2.0] * 3
    assert [m.step for m in client.get_metric_history(run_id, "epoch/epoch")] == [1, 2, 3]


def test_learning_curves_draw_only_measured_accuracies(new_run, tmp_path):
    """Epochs without validation log the -1.0 checkpoint-ranking placeholder as epoch/val_top1:
    the plot must not draw it (it showed as -100%)."""
    uri, run_id = new_run()
    logger = MetricLogger(uri, run_id)
    for epoch in range(1, 7):  # validation every third epoch
        val = epoch % 3 == 0
        logger.log({"train/loss": 2.0 / epoch, "train/lr": 0.1}, step=10 * epoch)
        logger.log({"epoch/train_top1": 0.1 * epoch, "epoch/val_top1": 0.15 * epoch if val else -1.0,
                    "epoch/val_top5": 0.16 * epoch if val else -1.0}, step=epoch)
    logger.flush()

    fig = learning_curves(uri, run_id)
    accuracy = fig.axes[2]
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    assert set(lines) == {"train top-1", "val top-1", "val top-5"}
    for line in lines.values():
        assert min(line.get_ydata()) >= 0, line.get_label()
    assert list(lines["val top-1"].get_xdata()) == [3, 6]  # the measured epochs, marked
    assert lines["val top-1"].get_marker() not in (None, "", "None")
    assert list(lines["train top-1"].get_xdata()) == [1, 2, 3, 4, 5, 6]

    png = save_figure(fig, tmp_path / "learning_curves.png")
    assert png.stat().st_size > 1000
    log_figure(uri, run_id, plot_confusion([[3, 1], [0, 4]], ["a", "b"], "cm"), "confusion_matrix.png",
               "best/confusion_matrix.png")
    client = MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.yaml", "confusion_matrix.png", "best"}
    assert [a.path for a in client.list_artifacts(run_id, "best")] == ["best/confusion_matrix.png"]
