"""Distributed training with Ray Train, the driver side: `run_training(cfg)` fixes the schedule,
checks everything it can before Ray starts, opens the run directory and the MLflow run, and hands
`worker.train_loop_per_worker` to a `TorchTrainer`.

Resume is automatic: a run is a directory `<output.root>/runs/<output.name>`; Ray Train restores
its checkpoint manager from there, so the same command after a crash (or a restarted worker group
under `FailureConfig`) continues from the latest checkpoint, in the same MLflow run, and ends with
the same number of optimiser steps as an uninterrupted run (steps per epoch are fixed up front).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
from ray.train.torch import TorchTrainer

from vfn.config.load import diff
from vfn.config.schema import ExperimentConfig, config_from_dict
from vfn.data.ledger import CorruptWatch
from vfn.data.manifest import read_label_names
from vfn.data.pipeline import datasets_for
from vfn.data.shards import count_videos, list_shards
from vfn.errors import ConfigError, first_line
from vfn.model import read_state_dict
from vfn.runtime import storage
from vfn.runtime.ray_setup import SplitDataConfig, check_resources, init_ray, quiet_ray_data, use_gpu, worker_scaling
from vfn.tracking import runs as tracking
from vfn.tracking.figures import save_figure
from vfn.tracking.models import MODEL_NAME, log_best_model

from .build import finetune_transfer, model_cost
from .checkpoints import CHECKPOINT_FILE, read_run_index, runs_location, write_run_index
from .progress import ProgressBoard, ProgressPrinter
from .step import Plan
from .worker import STOP_FILE, WorkerSetup, train_loop_per_worker

# sections that must match for a re-run to continue an existing run
RESUME_SECTIONS = ("seed", "model", "data", "augment", "optim", "eval", "scaling")
# how the same computation runs: a continued run may change them (e.g. drop compile after it failed)
EXECUTION_ONLY_KEYS = ("model.compile", "model.compile_mode")
CONFIG_FILE = "config.yaml"
MAX_LOGGED_CHECKPOINT_BYTES = 200 << 20  # larger best checkpoints are logged to MLflow as a pointer only


class TrainingError(RuntimeError):
    """The run failed (after the configured retries); one line, with where to look."""


@dataclass
class TrainResult:
    name: str
    run_dir: str  # a local path or a URI (s3://...): see `storage`
    metrics: dict[str, Any]
    best_checkpoint: str | None  # Ray checkpoint directories, same kind of location
    latest_checkpoint: str | None
    mlflow_run_id: str | None
    tracking_uri: str | None
    wall_s: float
    corrupt_note: str = ""  # which corrupt videos were skipped and where the full list is ('' for none)
    already_finished: bool = False  # it had trained every step with this config before: nothing ran



def make_plan(cfg: ExperimentConfig) -> Plan:
    """Count videos and fix the schedule; impossible combinations fail here, before Ray starts."""
    def count(key: str, where: str | None) -> int:
        if not where:
            return 0
        try:
            list_shards(where)
            return count_videos(where)
        except Exception as e:
            raise ConfigError(f"data.{key}: cannot read shards at {where} ({first_line(e)})") from None

    if not cfg.data.train:
        raise ConfigError("data.train: no training shards given (set data.train=DIR)")
    if cfg.model.pretrained and "://" not in cfg.model.pretrained and not Path(cfg.model.pretrained).is_file():
        raise ConfigError(f"model.pretrained: no such weights file {cfg.model.pretrained} "
                          "(or set model.pretrained=null)")
    n_train, n_val = count("train", cfg.data.train), count("val", cfg.data.val)
    w, b, accum = cfg.scaling.num_workers, cfg.optim.batch_size, cfg.optim.accum_steps
    micro = (n_train // w) // b
    if micro == 0:
        raise ConfigError(
            f"optim.batch_size: {n_train} training videos give no full batch of {b} per worker "
            f"with scaling.num_workers={w}"
        )
    steps = math.ceil(micro / accum)
    total = steps * cfg.optim.epochs
    return Plan(n_train, n_val, micro, steps, total, int(round(cfg.optim.warmup_epochs * steps)), cfg.scaled_lr)


def check_same_config(cfg: ExperimentConfig) -> str:
    """`<root>/runs/<name>` (a path or a URI); refuses, in one line, a run directory whose run was
    started with another config (a pre-flight check: before Ray starts)."""
    runs = runs_location(cfg.output.root)
    run_dir = storage.join(runs, cfg.output.name)
    if changes := config_changes(run_dir, cfg):
        more = f" (+{len(changes) - 1} more)" if len(changes) > 1 else ""
        raise ConfigError(
            f"run '{cfg.output.name}' in {runs} was started with another config ({changes[0]}{more}); "
            f"to continue it use the same settings, to start anew pass output.name=NEW_NAME"
        )
    return run_dir


def prepare_run_dir(cfg: ExperimentConfig) -> str:
    """`<root>/runs/<name>` (a path or a URI), with the resolved config; refuses to continue a run
    configured differently."""
    run_dir = check_same_config(cfg)
    storage.make_dirs(run_dir)
    storage.write_text(storage.join(run_dir, CONFIG_FILE), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


def config_changes(run_dir: str, cfg: ExperimentConfig) -> list[str] | None:
    """How `cfg` differs from the config the run at `run_dir` was started with, in the sections a
    continued run must keep; None when the run has no saved config yet."""
    saved = storage.join(run_dir, CONFIG_FILE)
    if (text := storage.read_text(saved)) is None:
        return None
    return diff(config_from_dict(yaml.safe_load(text), saved), cfg, RESUME_SECTIONS, ignore=EXECUTION_ONLY_KEYS)


def run_training(
    cfg: ExperimentConfig,
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    extra_tags: dict[str, str] | None = None,
    progress: bool = True,
    ray_init_kwargs: dict | None = None,
    callbacks: list | None = None,
) -> TrainResult:
    """Train (or continue) the run described by a validated config; returns its final metrics.

    This is the entry point a Ray Tune trial calls with its own config; `parent_run_id`,
    `run_name` and `extra_tags` let a sweep nest its trials under one MLflow run; `callbacks`
    are Ray Train callbacks (e.g. Tune's `TuneReportCallback`).
    """
    t0 = time.time()
    if not cfg.output.name:
        cfg = cfg.with_overrides({"output.name": f"{cfg.model.name}-{cfg.fingerprint()}"})
    plan = make_plan(cfg)
    label_names = check_labels(cfg)
    transfer = finetune_transfer(cfg)
    if transfer is not None:
        print(f"vfn train: fine-tuning from {cfg.model.finetune_from}: {transfer.summary()}", flush=True)
    if cfg.tracking.enabled:
        tracking.check_tracking_server(tracking.tracking_uri(cfg))  # before anything is written or spent
    check_same_config(cfg)
    if not callbacks and (done := finished_result(cfg, plan, t0)) is not None:  # a Tune trial needs its reports
        return done
    fixed = init_ray(ray_init_kwargs)
    gpu = use_gpu(cfg)
    check_resources(cfg, gpu, fixed)
    run_dir = prepare_run_dir(cfg)
    uri, run_id = open_mlflow_run(cfg, run_dir, parent_run_id, run_name, extra_tags, transfer)
    quiet_ray_data()
    board = ProgressBoard.remote() if progress else None
    corrupt = CorruptWatch(run_dir)
    loop_config = WorkerSetup(cfg, plan, str(run_dir), uri, run_id, label_names, board).to_ray()
    trainer = build_trainer(cfg, plan, gpu, loop_config, callbacks, corrupt.ledger)
    storage.pop_text(storage.join(run_dir, STOP_FILE))  # a reason left by an earlier attempt is not this one's
    try:
        result = fit(trainer, board, corrupt.note)
    except Exception as e:
        close_mlflow_run(uri, run_id, "FAILED")
        raise TrainingError(f"training run '{cfg.output.name}' failed: {first_line(e)} (logs: {run_dir})") from e
    if (reason := storage.pop_text(storage.join(run_dir, STOP_FILE))) is not None:
        close_mlflow_run(uri, run_id, "FAILED")
        skipped = corrupt.note()
        raise TrainingError(f"training run '{cfg.output.name}' stopped: {reason}" + (f"; {skipped}" if skipped else ""))
    metrics = dict(result.metrics or {})
    latest = storage.with_path(run_dir, result.checkpoint.path) if result.checkpoint else None
    best = latest
    if plan.val_videos and result.best_checkpoints:
        best = storage.with_path(run_dir, result.get_best_checkpoint(cfg.output.metric, "max").path)
    write_run_index(run_dir, best_checkpoint=best, latest_checkpoint=latest, mlflow_run_id=run_id, tracking_uri=uri,
                    plan=asdict(plan), final_metrics={k: v for k, v in metrics.items()
                                                      if isinstance(v, (int, float, str, bool))})
    skipped = corrupt.note()
    if run_id:
        if best is not None and cfg.tracking.log_model:
            model_uri = log_model(uri, run_id, cfg, storage.join(best, CHECKPOINT_FILE), label_names)
            print(f"best weights logged as MLflow model runs:/{run_id}/{MODEL_NAME} ({model_uri}"
                  f"{f', registered as {cfg.tracking.register_as}' if cfg.tracking.register_as else ''})")
        log_run_artifacts(uri, run_id, run_dir, best, metrics, corrupt.path if skipped else None)
    return TrainResult(cfg.output.name, run_dir, metrics, best, latest, run_id, uri, time.time() - t0, skipped)


def finished_result(cfg: ExperimentConfig, plan: Plan, t0: float) -> TrainResult | None:
    """The stored result when this run already trained every step with this config: running the
    same command again then starts nothing (Ray Train would spend ~20 s restoring the run only to
    find no step left). A run configured differently goes on to `prepare_run_dir`'s refusal. Not
    for sweep trials (Ray Train callbacks given): Tune expects the run's reports."""
    run_dir = storage.join(runs_location(cfg.output.root), cfg.output.name)
    index = read_run_index(run_dir)
    final = index.get("final_metrics")
    if not final or final.get("global_step") != plan.total_steps or config_changes(run_dir, cfg) != []:
        return None
    return TrainResult(cfg.output.name, run_dir, final, index.get("best_checkpoint"), index.get("latest_checkpoint"),
                       index.get("mlflow_run_id"), index.get("tracking_uri"), time.time() - t0, already_finished=True)


def check_labels(cfg: ExperimentConfig) -> list[str] | None:
    """The class names of `data.labels`, which must list `data.num_classes` classes."""
    if not cfg.data.labels:
        return None
    names = read_label_names(cfg.data.labels)
    if len(names) != cfg.data.num_classes:
        raise ConfigError(f"data.labels lists {len(names)} classes, data.num_classes={cfg.data.num_classes}")
    return names


def open_mlflow_run(cfg: ExperimentConfig, run_dir: str, parent_run_id: str | None, run_name: str | None,
                    extra_tags: dict[str, str] | None, transfer=None) -> tuple[str | None, str | None]:
    """(tracking URI, run id) of the run's MLflow run, created or reopened; (None, None) when off.
    `transfer`: the fine-tuning start's report (`step.finetune_transfer`), logged as a tag and a file."""
    if not cfg.tracking.enabled:
        return None, None
    params_m, gflops = model_cost(cfg)  # shapes only, on the meta device
    tags = {"params_M": f"{params_m:.4g}", "gflops_per_view": f"{gflops:.4g}", **(extra_tags or {})}
    if transfer is not None:
        tags["finetune.report"] = transfer.summary()[:5000]
    run_id = tracking.start_run(cfg, run_dir, tags=tags, parent_run_id=parent_run_id, run_name=run_name)
    uri = tracking.tracking_uri(cfg)
    if transfer is not None:
        tracking.log_dict(uri, run_id, asdict(transfer), "finetune_report.json")
    return uri, run_id


def close_mlflow_run(uri: str | None, run_id: str | None, status: str) -> None:
    if run_id:
        tracking.finish_run(uri, run_id, status)


def build_trainer(cfg: ExperimentConfig, plan: Plan, gpu: bool, loop_config: dict,
                  callbacks: list | None, corrupt_ledger=None) -> TorchTrainer:
    """The `TorchTrainer` of a run: its workers, storage (checkpoints next to the run directory,
    through the same pyarrow filesystem: local disk, NFS or s3://) and checkpoint ranking."""
    fs, runs_path = storage.filesystem_and_path(runs_location(cfg.output.root))
    ranking = cfg.output.metric if plan.val_videos else None
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=worker_scaling(cfg, gpu),
        run_config=RunConfig(
            name=cfg.output.name,
            storage_path=runs_path,
            storage_filesystem=fs if storage.is_remote(loop_config["run_dir"]) else None,
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.output.keep, checkpoint_score_attribute=ranking,
                                               checkpoint_score_order="max"),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=callbacks,
        ),
        datasets=datasets_for(cfg, use_gpu=gpu, corrupt_ledger=corrupt_ledger),
        dataset_config=SplitDataConfig(),
    )


def fit(trainer: TorchTrainer, board, note=None) -> Any:
    """`trainer.fit()`, with the live progress line while it runs when there is a board (`note`:
    what to add to it, e.g. the corrupt videos skipped so far)."""
    if board is None:
        return trainer.fit()
    try:
        with ProgressPrinter(board, note=note):
            return trainer.fit()
    finally:
        ray.kill(board)


def log_model(uri: str, run_id: str, cfg: ExperimentConfig, checkpoint: str, label_names: list[str] | None) -> str:
    """The best checkpoint's weights as the run's MLflow model (`tracking.log_model`)."""
    weights = read_state_dict(storage.local_copy(checkpoint), mmap=True)  # its "model" entry, mapped: no optimiser
    return log_best_model(uri, run_id, cfg, weights, label_names)


def log_run_artifacts(uri: str, run_id: str, run_dir: str, best: str | None, metrics: dict,
                      corrupt_list: str | None = None) -> None:
    """A pointer to (and for small models a copy of) the best checkpoint, the learning curves (also
    kept in the run directory), the corrupt-video list, and the final validation figures as tags;
    then the run is FINISHED."""
    with tempfile.TemporaryDirectory() as tmp:
        files: list[tuple[Path, str | None]] = []
        if best is not None:
            ckpt = storage.join(best, CHECKPOINT_FILE)
            pointer = Path(tmp, "best_checkpoint.txt")
            pointer.write_text(f"{ckpt}\n")
            storage.upload(pointer, storage.join(run_dir, pointer.name))
            files.append((pointer, None))
            fs, path = storage.filesystem_and_path(ckpt)
            if (fs.get_file_info(path).size or 0) <= MAX_LOGGED_CHECKPOINT_BYTES:
                files.append((storage.local_copy(ckpt, tmp), "best_checkpoint"))
        if corrupt_list is not None:
            files.append((storage.local_copy(corrupt_list, tmp), None))
        curves = save_figure(tracking.learning_curves(uri, run_id), Path(tmp) / "learning_curves.png")
        storage.upload(curves, storage.join(run_dir, curves.name))
        files.append((curves, None))
        final = {k: metrics[k] for k in ("val_top1", "val_top5", "val_mean_class_acc", "global_step") if k in metrics}
        tracking.finish_training_run(uri, run_id, files, final)
