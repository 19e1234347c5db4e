"""2-worker Ray Train runs on tiny synthetic data: the planned optimiser step count with gradient
accumulation, validation counting every video once, an MLflow run that reads back complete, a re-run
that continues in the same run, `vfn eval`, and bad data stopping a run in one line. (A worker lost
mid-run is recovered in tests/training/test_multinode.py with 2 workers and tests/runtime/test_storage.py from
a bucket; fits are costly, so each scenario is proved once.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.support import created_actors, tiny_experiment
from vfn.config.schema import config_from_dict

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from vfn.data.ingest import write_shards
    from vfn.data.manifest import read_manifest
    from vfn.data.synth import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny")
    synth = make_synthetic_dataset(root / "synth", 44, seed=1, num_classes=8, size=32, num_frames=8)
    val = read_manifest(synth.val_manifest, root=synth.root)[:-1]  # odd: 2 workers cannot split it evenly
    write_shards(synth.train_manifest, str(root / "train"), root=synth.root, progress=False)
    write_shards(val, str(root / "val"), progress=False)
    spoil_videos(root / "train", 1)  # one training video no longer decodes: skipped, counted and named
    return root, synth, len(val)


def spoil_videos(shards: Path, n: int, out: Path | None = None) -> list[str]:
    """Replace the bytes of the first `n` videos of the first shard by garbage (in place, or into a
    copy of the shards at `out`); returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vfn.data.shards import list_shards

    spoiled = []
    for i, f in enumerate(list_shards(str(shards))):
        table = pq.read_table(f)
        if i == 0:
            videos = table.column("video").to_pylist()
            videos[:n] = [b"not a video" * 100] * n
            spoiled = table.column("path").to_pylist()[:n]
            table = table.set_column(table.schema.get_field_index("video"), "video", pa.array(videos, pa.binary()))
        if out is not None or i == 0:
            (out or shards).mkdir(exist_ok=True)
            pq.write_table(table, (out or shards) / Path(f).name)
    return spoiled


def tiny_config(root, synth, workdir, *extra):
    raw = tiny_experiment(
        root, workdir,
        model={"drop_path_rate": 0.1},
        data={"labels": str(synth.labels_csv), "num_classes": 8, "sampling": "segment", "max_corrupt_share": 0.1},
        augment={"mixup_prob": 1.0},
        optim={"epochs": 3, "warmup_epochs": 1, "min_lr": 1e-6, "accum_steps": 2, "clip_grad": 1.0},
        eval={"num_clips": 2, "batch_size": 3},
        scaling={"num_workers": 2, "cpus_per_worker": 0.5},
        output={"name": "tiny", "keep": 1})
    cfg = config_from_dict(raw)
    return cfg.with_overrides(list(extra)) if extra else cfg


@pytest.mark.slow
def test_two_workers_train_validate_track_resume_and_evaluate(ray_session, tiny_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from vfn.data.shards import count_videos
    from vfn.training.checkpoints import load_state, read_run_index
    from vfn.training.driver import run_training

    root, synth, n_val = tiny_data
    cfg = tiny_config(root, synth, tmp_path, "optim.epochs=2", "eval.every_epochs=2")  # validates after epoch 2 only
    watchers = created_actors("PreemptionWatcher")
    result = run_training(cfg, progress=False)
    assert created_actors("PreemptionWatcher") == watchers  # a local Ray has no autoscaler to drain nodes

    # 35 videos / 2 workers -> 17 each -> 4 batches of 4 -> 2 steps of 2 accumulated batches
    n_train = count_videos(str(root / "train"))
    steps_per_epoch = -(-((n_train // 2) // 4) // 2)
    m = result.metrics
    assert m["restarts"] == 0
    assert m["epoch"] == 2 and m["global_step"] == 2 * steps_per_epoch
    assert m["val_videos"] + m["val_corrupt"] == n_val == 7  # every video once, none dropped by the split
    assert m["train_corrupt"] >= 1 and result.corrupt_note.startswith("1 corrupt video skipped (")
    assert result.corrupt_note.endswith(f"; all in {result.run_dir}/corrupt_videos.csv)")

    # checkpoints: loadable with weights_only=True, complete
    state = load_state(result.best_checkpoint)
    assert {"model", "optimizer", "scheduler", "epoch", "global_step", "config", "mlflow_run_id"} <= set(state)
    assert state["config"]["output"]["name"] == "tiny" and state["mlflow_run_id"] == result.mlflow_run_id
    torch.load(Path(result.latest_checkpoint) / "checkpoint.pt", weights_only=True)
    assert read_run_index(result.run_dir)["mlflow_run_id"] == result.mlflow_run_id

    # MLflow, read back through the client
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.accum_steps"] == "2" and run.data.params["model.design"] == "parallel"
    tags = run.data.tags
    assert tags["model"] == "videofocalnet_tiny" and tags["design"] == "parallel"
    assert float(tags["gflops_per_view"]) > 0 and float(tags["params_M"]) > 0
    epochs = sorted(x.step for x in client.get_metric_history(run.info.run_id, "epoch/val_top1"))
    assert epochs == [2]  # only the epoch that validated, once: no placeholder for epoch 1
    assert all(x.value >= 0 for x in client.get_metric_history(run.info.run_id, "epoch/val_top1"))
    for key in ("epoch/train_top1", "epoch/data_wait_share", "epoch/train_corrupt", "train/loss", "train/lr",
                "train/clips_per_s"):
        assert client.get_metric_history(run.info.run_id, key), key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "learning_curves.png", "best_checkpoint.txt",
            "best_checkpoint", "corrupt_videos.csv"} <= artifacts
    # the best weights are also the run's MLflow model (tracking.log_model)
    import mlflow.pytorch

    from vfn.tracking.models import tracking_at

    with tracking_at(result.tracking_uri):
        logged = mlflow.pytorch.load_model(f"runs:/{result.mlflow_run_id}/model").state_dict()
    assert all(torch.equal(logged[k], v) for k, v in state["model"].items())
    from vfn.commands.train import summary

    assert f"  {result.corrupt_note}" in summary(result).splitlines()

    # the same command again: the run had finished, so nothing starts (no Ray Train run), and the
    # stored result names the same MLflow run and step count
    import vfn.training.driver as train_module

    monkeypatch.setattr(train_module, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = run_training(cfg, progress=False)
    assert again.already_finished and again.mlflow_run_id == result.mlflow_run_id
    assert again.metrics["global_step"] == m["global_step"] and again.best_checkpoint == result.best_checkpoint
    assert "had already finished: 2 epochs" in summary(again)
    monkeypatch.undo()

    # `vfn eval` path: 2 workers, multi-view, every video once; the driver reads only the
    # checkpoint's header (torch.load here would read weights and optimiser state: Ray's workers
    # are other processes and load the weights themselves)
    from vfn.evaluation.driver import run_evaluation
    from vfn.evaluation.metrics import EvaluationCountError

    def no_load(*args, **kwargs):
        raise AssertionError("the evaluation driver loaded the whole checkpoint")

    monkeypatch.setattr(torch, "load", no_load)
    res, info = run_evaluation(str(result.run_dir), str(root / "val"), workdir=str(tmp_path),
                               overrides=["eval.num_clips=1", "eval.num_crops=3"])
    assert res.videos + res.corrupt == n_val and res.confusion.sum() == res.videos
    assert info["mlflow_run_id"] == result.mlflow_run_id
    assert "eval_top1" in client.get_run(result.mlflow_run_id).data.metrics

    # a counting error inside the workers reaches the caller as the one-line EvaluationCountError
    # (not wrapped in Ray's worker-failure traceback): two rows claiming the same video index
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vfn.data.shards import list_shards

    dup = tmp_path / "val_dup"
    dup.mkdir()
    for i, f in enumerate(list_shards(str(root / "val"))):
        table = pq.read_table(f)
        if i == 0:
            index = table.column("index").to_pylist()
            index[1] = index[0]
            table = table.set_column(table.schema.get_field_index("index"), "index", pa.array(index, pa.int64()))
        pq.write_table(table, dup / Path(f).name)
    with pytest.raises(EvaluationCountError,
                       match=r"^evaluation covered the 7 validation videos unevenly: 1 never seen"):
        run_evaluation(str(result.run_dir), str(dup), workdir=str(tmp_path), log_to_mlflow=False, num_workers=1,
                       overrides=["eval.num_clips=1", "eval.num_crops=1"])


@pytest.mark.slow
def test_corrupt_training_videos_over_budget_stop_the_run_in_one_line(ray_session, tiny_data, tmp_path):
    """Videos that no longer decode are counted; above `data.max_corrupt_share` the run stops after
    the epoch with a one-line TrainingError naming the count, and the MLflow run is FAILED."""
    from mlflow.tracking import MlflowClient

    from vfn.training.driver import TrainingError, run_training

    root, synth, _ = tiny_data
    broken = tmp_path / "train_broken"
    spoiled = spoil_videos(root / "train", 6, out=broken)  # six videos whose bytes are no longer a video
    cfg = tiny_config(root, synth, tmp_path, f"data.train={broken}", "data.max_corrupt_share=0.01",
                      "optim.epochs=1", "optim.warmup_epochs=0", "scaling.num_workers=1", "output.name=broken")
    stopped = (r"stopped: training data: \d+ of \d+ videos .* could not be decoded"
               r".*; 6 corrupt videos skipped \(.*, \.\.\.; all in .*corrupt_videos.csv\)$")
    with pytest.raises(TrainingError, match=stopped):
        run_training(cfg, progress=False)
    listed = (tmp_path / "runs" / "broken" / "corrupt_videos.csv").read_text().splitlines()
    assert listed[0] == "split,path,reason" and sorted(ln.split(",")[1] for ln in listed[1:]) == sorted(spoiled)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("video-focalnets").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.metrics["epoch/train_corrupt"] >= 3


def test_a_run_started_with_another_config_is_refused_and_never_taken_as_finished(tmp_path, monkeypatch):
    """No Ray: the saved config decides both whether a re-run may continue and whether it is done."""
    from vfn.config.load import load_config
    from vfn.errors import ConfigError
    from vfn.training import driver
    from vfn.training.checkpoints import write_run_index
    from vfn.training.driver import finished_result, prepare_run_dir
    from vfn.training.step import Plan

    cfg = load_config(None, [f"output.root={tmp_path}", "output.name=r"])
    plan = Plan(train_videos=8, val_videos=0, micro_steps_per_epoch=2, steps_per_epoch=2, total_steps=4,
                warmup_steps=0, lr=1e-3)
    assert finished_result(cfg, plan, 0.0) is None  # nothing there yet
    run_dir = prepare_run_dir(cfg)
    write_run_index(run_dir, final_metrics={"global_step": 4, "epoch": 2})
    assert finished_result(cfg, plan, 0.0).already_finished
    assert finished_result(cfg, replace(plan, total_steps=6), 0.0) is None  # more data: more steps to go
    changed = cfg.with_overrides({"optim.lr": 0.5})
    assert finished_result(changed, plan, 0.0) is None
    with pytest.raises(ConfigError, match=r"was started with another config \(.*optim.lr"):
        prepare_run_dir(changed)
    # `vfn train` refuses it before Ray starts (no 5 s of start-up for a one-line refusal)
    monkeypatch.setattr(driver, "make_plan", lambda c: plan)  # there are no shards to count here
    monkeypatch.setattr(driver, "init_ray", lambda *a, **k: pytest.fail("Ray started before the refusal"))
    with pytest.raises(ConfigError, match="output.name=NEW_NAME"):
        driver.run_training(changed)
    # how the same computation runs may change (e.g. continuing eagerly after compilation failed)
    assert prepare_run_dir(cfg.with_overrides({"model.compile": True, "model.compile_mode": "max-autotune"}))
