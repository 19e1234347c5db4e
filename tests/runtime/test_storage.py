"""Object storage, as on the cluster, against a real S3 API: moto's server on 127.0.0.1.

Shards, Ray Train's run directory and checkpoints, Tune's experiment state and MLflow's artifacts
(through a real `mlflow server --artifacts-destination s3://...`) all live in the bucket. A killed
`vfn train` driver and a killed `vfn ablate` driver each resume with the same command from what is
in the bucket (a lost head node; the drivers run as subprocesses with their own local Ray, whose
workers inherit the S3 endpoint from the environment as a cluster's nodes would); `vfn eval` reads
the run back from S3.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support import free_port, running_mlflow_server, tiny_experiment

BUCKET = "vfn-test"


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """A local S3 endpoint with one bucket; the AWS_* variables point this process and its children to it."""
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        deadline = time.time() + 30
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    proc.kill()
                    pytest.fail(f"moto server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield env
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def s3_mlflow(s3_env, tmp_path_factory):
    """A real MLflow server whose artifact store is the bucket, as the cluster's head runs it."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow"), f"s3://{BUCKET}/mlartifacts", env=s3_env) as uri:
        yield uri


def upload_shards(local: Path, prefix: str) -> str:
    """The cluster's layout: shards uploaded once, read by every node."""
    import pyarrow.fs as pafs

    from vfn.runtime import storage

    fs, _ = storage.filesystem_and_path(f"s3://{BUCKET}")
    for split in ("train", "val"):
        pafs.copy_files(str(local / split), f"{BUCKET}/{prefix}/{split}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)
    return f"s3://{BUCKET}/{prefix}"


def driver_env(s3_env: dict) -> dict:
    env = {**os.environ, **s3_env, "RAY_DEDUP_LOGS": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def s3_keys(prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_storage_round_trip_and_shards_on_s3(s3_env, tiny_shards, tmp_path):
    from vfn.data.ingest import write_shards
    from vfn.data.shards import count_videos, list_shards
    from vfn.data.synth import make_synthetic_dataset
    from vfn.runtime import storage
    from vfn.training.checkpoints import RunCheckpointError, find_checkpoint, resolve_checkpoint

    root = f"s3://{BUCKET}/unit"
    storage.write_text(storage.join(root, "a", "b.txt"), "hello")
    assert storage.read_text(f"{root}/a/b.txt") == "hello" and storage.read_text(f"{root}/a/nope") is None
    assert storage.is_dir(f"{root}/a") and storage.is_file(f"{root}/a/b.txt") and not storage.exists(f"{root}/c")
    local = storage.local_copy(f"{root}/a/b.txt", tmp_path / "cache")
    assert local.read_text() == "hello" and local.is_relative_to(tmp_path / "cache")

    # shards written straight to the bucket, listed and counted from their footers
    synth = make_synthetic_dataset(tmp_path / "synth", 8, seed=0, num_classes=2, size=32, num_frames=8)
    report = write_shards(synth.train_manifest, f"{root}/shards", root=synth.root, progress=False)
    assert report.shards and all(s.startswith(f"{root}/shards/shard-") for s in report.shards)
    assert list_shards(f"{root}/shards") == report.shards and count_videos(f"{root}/shards") == report.videos
    assert "unit/shards/_plan.json" in s3_keys("unit/shards/")

    # a run directory's checkpoints are found by the same rules as on disk
    run = f"{root}/runs/r"
    with pytest.raises(RunCheckpointError, match="no checkpoint.pt here"):
        storage.make_dirs(run)
        storage.write_text(f"{run}/config.yaml", "x: 1\n")
        find_checkpoint(run)
    for name in ("checkpoint_2026-01-01_00-00-00.000000", "checkpoint_2026-01-02_00-00-00.000000"):
        storage.write_text(f"{run}/{name}/checkpoint.pt", name)
    assert find_checkpoint(run) == f"{run}/checkpoint_2026-01-02_00-00-00.000000/checkpoint.pt"  # the newest
    storage.write_text(f"{run}/vfn_run.json",
                       json.dumps({"best_checkpoint": f"{run}/checkpoint_2026-01-01_00-00-00.000000"}))
    assert resolve_checkpoint(run).read_text() == "checkpoint_2026-01-01_00-00-00.000000"  # downloaded


def test_remote_root_without_a_tracking_server_is_refused_before_ray(s3_env, tiny_shards, tmp_path, monkeypatch):
    from vfn.config.schema import config_from_dict
    from vfn.errors import ConfigError
    from vfn.training.driver import run_training

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    raw = tiny_experiment(tiny_shards, tmp_path, output={"root": f"s3://{BUCKET}/no-server", "name": "x"})
    cfg = config_from_dict(raw)
    with pytest.raises(ConfigError, match="MLflow needs a tracking server"):
        run_training(cfg, progress=False)
    assert not s3_keys("no-server/")  # refused before anything was written


def _vfn(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from vfn.cli import main; sys.exit(main())", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _registered_checkpoint(run_prefix: str) -> bool:
    """Ray Train has registered a checkpoint of the run (its snapshot names one)."""
    import boto3

    key = f"{run_prefix}checkpoint_manager_snapshot.json"
    if key not in s3_keys(key):
        return False
    return "checkpoint_" in boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def _kill_driver_after_first_checkpoint(command: list[str], env: dict, cwd: Path, run_prefix: str) -> str:
    """Start `vfn train`, SIGKILL its driver process (only it) once Ray Train has registered the
    first checkpoint, while the next epoch runs; returns its output."""
    log_path = cwd / "killed-driver.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.time() + 600
            while not _registered_checkpoint(run_prefix):
                assert proc.poll() is None, f"the run ended before it could be killed:\n{log_path.read_text()[-3000:]}"
                assert time.time() < deadline, "no checkpoint within 10 minutes"
                time.sleep(0.3)
            os.kill(proc.pid, signal.SIGKILL)  # the driver only: Ray's reaper takes its local cluster down
            proc.wait(timeout=60)
        finally:
            time.sleep(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of its Ray the reaper left
    return log_path.read_text()


@pytest.mark.ray
@pytest.mark.slow
def test_training_on_s3_resumes_after_a_killed_driver_and_evaluates_from_s3(s3_env, s3_mlflow, tiny_shards, tmp_path):
    """`vfn train` killed (SIGKILL) in the middle of its second epoch, then the same command again:
    the run continues from its checkpoint in the bucket to the full optimiser step count, in the one
    MLflow run, with every (metric, step) logged once."""
    from mlflow.tracking import MlflowClient

    from vfn.data.shards import count_videos
    from vfn.training.checkpoints import load_state, read_run_index

    data = upload_shards(tiny_shards, "shards")
    root = f"s3://{BUCKET}/work"
    env = driver_env(s3_env)
    raw = tiny_experiment(tiny_shards, tmp_path, optim={"epochs": 2}, eval={"every_epochs": 1},
                          tracking={"tracking_uri": s3_mlflow, "experiment": "s3", "log_every_steps": 1},
                          output={"root": root, "name": "s3run", "checkpoint_every": 1})
    raw["data"].update(train=f"{data}/train", val=f"{data}/val")
    (tmp_path / "s3.yaml").write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-c", "import sys; from vfn.cli import main; sys.exit(main())",
               "train", "s3.yaml", "--address", "local"]
    _kill_driver_after_first_checkpoint(command, env, tmp_path, "work/runs/s3run/")
    train = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]

    # one worker of one, batch 4: steps per epoch = ceil(videos / 4), as if never interrupted
    steps = 2 * -(-count_videos(str(tiny_shards / "train")) // 4)
    assert f"2 epochs, {steps} optimiser steps, resumed from a checkpoint 1 time(s)" in train.stdout
    run_dir = f"{root}/runs/s3run"
    index = read_run_index(run_dir)
    assert index["best_checkpoint"].startswith(f"{run_dir}/checkpoint_")
    state = load_state(index["latest_checkpoint"])  # downloaded from S3, weights_only
    assert state["epoch"] == 2 and state["global_step"] == steps and state["restarts"] == 1
    assert not (tmp_path / "runs").exists()  # nothing fell back to the local disk
    assert {"work/runs/s3run/config.yaml", "work/runs/s3run/learning_curves.png"} <= set(s3_keys("work/runs/s3run/"))

    # one MLflow run; every metric's steps logged once, the epochs 1 and 2 once each
    client = MlflowClient(tracking_uri=s3_mlflow)
    experiment = client.get_experiment_by_name("s3")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [index["mlflow_run_id"]]
    run_id = index["mlflow_run_id"]
    for key in client.get_run(run_id).data.metrics:
        logged = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(logged) == len(set(logged)), (key, sorted(logged))
    assert sorted(m.step for m in client.get_metric_history(run_id, "epoch/train_loss")) == [1, 2]
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == list(range(1, steps + 1))

    # MLflow: metrics over HTTP, artifacts proxied by the server into the bucket
    client = MlflowClient(tracking_uri=s3_mlflow)
    run = client.get_run(index["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["vfn.run_dir"] == run_dir
    assert run.data.params["model.embed_dim"] == "8" and run.data.params["data.num_classes"] == "4"
    assert run.data.tags["design"] == "parallel" and float(run.data.tags["gflops_per_view"]) > 0
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_top1")) == [1, 2]
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store
    stored = s3_keys("mlartifacts/")
    for name in ("config.yaml", "learning_curves.png", "best_checkpoint/checkpoint.pt"):
        assert any(k.endswith(f"{run.info.run_id}/artifacts/{name}") for k in stored), (name, stored)

    # evaluation reads the run directory and the shards from S3, and logs into the same run
    ev = _vfn(["eval", run_dir, "--data", f"{data}/val", "--address", "local"], env, tmp_path)
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    assert "top-1" in ev.stdout
    assert "eval_top1" in client.get_run(run.info.run_id).data.metrics
    # its Ray storage sits beside the run in the bucket, not in the working directory
    assert not (tmp_path / "runs").exists()
    assert any(k.startswith("work/runs/eval-s3run-") for k in s3_keys("work/runs/"))


def _sweep_runs(prefix: str) -> tuple[list[str], list[str]]:
    """(finished, interrupted-with-a-checkpoint) trial run directories under an S3 prefix: a finished
    one has the driver's run index, an interrupted one a registered checkpoint and no index yet."""
    keys = s3_keys(prefix)
    runs = sorted({k[:k.index("/", len(prefix)) + 1] for k in keys if "/" in k[len(prefix):]})
    finished = [r for r in runs if f"{r}vfn_run.json" in keys]
    interrupted = [r for r in runs if r not in finished and _registered_checkpoint(r)]
    return finished, interrupted


@pytest.mark.ray
@pytest.mark.slow
def test_killed_sweep_driver_resumes_from_the_bucket_without_rerunning_finished_trials(s3_env, s3_mlflow, tiny_shards,
                                                                                      tmp_path):
    """`vfn ablate` with its state, runs and checkpoints in the bucket is killed (its whole process
    group, as a lost head node) between a finished and a running trial; the same command again (a
    new head) restores the experiment from S3: the finished trial is not re-run, the interrupted one
    continues from its checkpoint to the same step count, and the terminal stays readable."""
    from mlflow.tracking import MlflowClient

    data = upload_shards(tiny_shards, "sweep-shards")
    root = f"s3://{BUCKET}/sweep-work"
    base = tiny_experiment(tiny_shards, tmp_path, optim={"epochs": 2}, eval={"every_epochs": 2},  # at the end
                           tracking={"tracking_uri": s3_mlflow, "experiment": "s3-sweep"},
                           output={"root": root, "checkpoint_every": 1})
    base["data"].update(train=f"{data}/train", val=f"{data}/val")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "ablate.yaml").write_text(yaml.safe_dump({
        "name": "s3abl", "base": "base.yaml", "space": {"model.design": {"grid": ["parallel", "spatial"]}},
        "seeds": [0], "trial": {"num_workers": 1, "cpus_per_worker": 0.5},
        "max_concurrent_trials": 1,  # one after the other: the kill lands between a finished and a running trial
    }))
    env = driver_env(s3_env)
    command = [sys.executable, "-c", "import sys; from vfn.cli import main; sys.exit(main())",
               "ablate", "ablate.yaml", "--address", "local"]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            deadline = time.time() + 600
            while not all(_sweep_runs("sweep-work/runs/")):
                assert first.poll() is None, f"the sweep ended first:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
                assert time.time() < deadline, "timed out waiting for a finished and an interrupted trial"
                time.sleep(0.5)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)
    (finished,), (interrupted,) = _sweep_runs("sweep-work/runs/")
    client = MlflowClient(tracking_uri=s3_mlflow)
    done_run = read_run_index_of(finished)["mlflow_run_id"]
    done_end = client.get_run(done_run).info.end_time
    time.sleep(5)  # Ray's reaper takes the dead driver's local cluster down

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming" in again.stdout and "| parallel |" in again.stdout and "| spatial |" in again.stdout
    # quiet: trial lines; Ray's own output (per-report dicts, worker-start warnings, Tune's tables) in a log
    assert "Ray's own output: " in again.stdout and "epoch 2/2" in again.stdout and " done, " in again.stdout
    for noise in ("TrainingReport(", "PYTHON worker processes", "Trial status", "Deprecat"):
        assert noise not in again.stdout + again.stderr, noise

    # the driver's state, Tune's experiment and the report live in the bucket
    exp = "sweep-work/ray_results/s3abl/"
    keys = set(s3_keys(exp))
    assert {exp + "vfn_sweep.json", exp + "report/ablation.md", exp + "report/ablation.csv"} <= keys
    assert any(k.startswith(exp) and k.endswith("tuner.pkl") for k in keys)
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "runs").exists()

    # MLflow: the restored sweep reopened its parent run; two children, the finished one untouched,
    # the interrupted one continued from its checkpoint to the same step count, each epoch logged once
    experiment = client.get_experiment_by_name("s3-sweep")
    parents = client.search_runs([experiment.experiment_id], "tags.`vfn.kind` = 'ablate'")
    assert len(parents) == 1
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert len(children) == 2
    assert client.get_run(done_run).info.end_time == done_end, "the finished trial was run again"
    resumed = client.get_run(read_run_index_of(interrupted)["mlflow_run_id"])
    assert resumed.info.status == "FINISHED" and resumed.data.tags.get("vfn.resumed") == "true"
    assert resumed.data.metrics["epoch/restarts"] >= 1
    done_steps = client.get_run(done_run).data.tags["final.global_step"]
    assert resumed.data.tags["final.global_step"] == done_steps and int(done_steps) > 0
    for run_id in (done_run, resumed.info.run_id):
        assert sorted(m.step for m in client.get_metric_history(run_id, "epoch/train_loss")) == [1, 2]


def read_run_index_of(run_prefix: str) -> dict:
    from vfn.training.checkpoints import read_run_index

    return read_run_index(f"s3://{BUCKET}/{run_prefix}")
