"""`vfn eval`, the driver side: a checkpoint on a validation/test split, over Ray Train workers.

What is evaluated (`EvalSource`) is resolved and checked before Ray starts: a training checkpoint
(its header gives the config and MLflow run), an MLflow model URI, or released weights described by
an experiment file and/or `--model`. The metrics go to MLflow through `vfn.tracking`.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ray.train import RunConfig
from ray.train.torch import TorchTrainer

from vfn.config.load import load_config
from vfn.config.schema import ExperimentConfig, config_from_dict
from vfn.data.manifest import read_label_names
from vfn.data.pipeline import datasets_for
from vfn.data.shards import count_videos
from vfn.errors import ConfigError
from vfn.model.weights import first_mismatch, read_state_dict
from vfn.runtime import storage
from vfn.runtime.ray_setup import SplitDataConfig, check_resources, init_ray, quiet_ray_data, use_gpu, worker_scaling
from vfn.tracking.models import export_state_dict, is_model_uri
from vfn.tracking.runs import (
    default_tracking_uri,
    finish_run,
    log_confusion,
    log_metrics_once,
    run_exists,
    start_run,
    tracking_uri,
)
from vfn.training.build import meta_state_dict
from vfn.training.checkpoints import RunCheckpointError, find_checkpoint, read_header, runs_location

from .metrics import EvalResult, EvaluationCountError
from .worker import eval_loop_per_worker


@dataclass(frozen=True)
class EvalSource:
    """What `vfn eval` evaluates. `trained`: a vfn training checkpoint, whose header gives the
    config and MLflow run; else released weights or a plain state dict, described by an experiment
    file and/or `--model` plus overrides, and checked to fit before Ray starts."""

    cfg: ExperimentConfig
    weights: str  # the checkpoint file's location (path or URI)
    trained: bool
    mlflow_run_id: str | None = None
    origin: str | None = None  # what was given, when the weights were taken from it (an MLflow model URI)

    @property
    def views(self) -> str:
        return f"{self.cfg.eval.num_clips}x{self.cfg.eval.num_crops}"


def eval_source(checkpoint: str, data: str, overrides: list[str] | None = None, config_file: str | None = None,
                model: str | None = None, tracking_uri: str | None = None, workdir: str = ".") -> EvalSource:
    """Resolve a checkpoint (file, checkpoint or run directory, released weights, or an MLflow model
    URI in the store at `tracking_uri`) and its config."""
    data_keys = {"data.val": storage.absolute(data), "data.train": None}
    if is_model_uri(checkpoint):
        if config_file or model:
            raise ConfigError(f"{checkpoint} is a vfn model and carries its own config; --config and --model "
                              "describe released weights (override single keys instead)")
        return model_source(checkpoint, tracking_uri, workdir, [data_keys, *([overrides] if overrides else [])])
    try:
        path = find_checkpoint(checkpoint)
        header = read_header(path)
    except RunCheckpointError:
        if not storage.is_file(str(checkpoint)):
            raise
        cfg = load_config(config_file, [*([f"model.name={model}"] if model else []), *(overrides or [])])
        cfg = cfg.with_overrides(data_keys)
        check_weights_fit(cfg, str(checkpoint))
        return EvalSource(cfg, storage.absolute(checkpoint), trained=False)
    if config_file or model:
        raise ConfigError(f"{path} is a vfn training checkpoint and carries its own config; --config and --model "
                          "describe released weights (override single keys instead)")
    cfg = config_from_dict(header["config"], f"{path} (saved config)").with_overrides(data_keys)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return EvalSource(cfg, str(path), trained=True, mlflow_run_id=header.get("mlflow_run_id"))


def model_source(model_uri: str, tracking_uri: str | None, workdir: str, overrides: list) -> EvalSource:
    """An MLflow model's weights exported next to the evaluation's Ray storage (the workers load
    them as released weights), with the config from its metadata and the overrides applied."""
    cfg, path = export_state_dict(model_uri, tracking_uri or default_tracking_uri(), Path(workdir) / "mlflow_models")
    for o in overrides:
        cfg = cfg.with_overrides(o)
    return EvalSource(cfg, str(path.resolve()), trained=False, origin=model_uri)


def check_weights_fit(cfg: ExperimentConfig, weights: str) -> None:
    """Weights that do not load strictly into the config's model: a one-line ConfigError naming the
    first key that does not fit (shapes only: the file is memory-mapped, the model built on `meta`)."""
    sd = read_state_dict(storage.local_copy(weights), mmap=True)
    if problem := first_mismatch(meta_state_dict(cfg), sd):
        raise ConfigError(f"{weights} does not fit the config's model ({cfg.model.name}, design {cfg.model.design}, "
                          f"{cfg.data.num_classes} classes): {problem}")


def run_evaluation(
    checkpoint: str,
    data: str,
    *,
    overrides: list[str] | None = None,
    config_file: str | None = None,
    model: str | None = None,
    workdir: str = ".",
    num_workers: int | None = None,
    use_ema: bool = False,
    log_to_mlflow: bool = True,
    ray_init_kwargs: dict | None = None,
    tracking_uri: str | None = None,
) -> tuple[EvalResult, dict]:
    """Evaluate a training checkpoint, an MLflow model URI (`runs:/`, `models:/` in the store at
    `tracking_uri`), or released weights described by `config_file` / `model` and overrides, on
    Parquet shards. A training checkpoint's metrics go to its MLflow run when
    its store is reachable, else to a new run in `<workdir>/mlflow.db`; released weights get an
    evaluation run of their own in the config's store. Returns (result, info).

    The driver reads only a training checkpoint's small header (config, MLflow run id), and only
    the shapes of released weights; the workers load the weights, each on its own node."""
    source = eval_source(checkpoint, data, overrides, config_file, model, tracking_uri, workdir)
    if num_workers:
        source = replace(source, cfg=source.cfg.with_overrides({"scaling.num_workers": num_workers}))
    t0 = time.time()
    res = evaluate_on_ray(source, workdir, use_ema, ray_init_kwargs)
    info = {"checkpoint": source.weights, "seconds": time.time() - t0, "views": source.views}
    if log_to_mlflow and source.cfg.tracking.enabled:
        info.update(log_evaluation(source, res, data, workdir))
    return res, info


def evaluate_on_ray(source: EvalSource, workdir: str, use_ema: bool, ray_init_kwargs: dict | None) -> EvalResult:
    cfg = source.cfg
    num_videos = count_videos(cfg.data.val)
    fixed = init_ray(ray_init_kwargs)
    quiet_ray_data()
    gpu = use_gpu(cfg)
    check_resources(cfg, gpu, fixed)
    # a trained run's evaluation sits beside the run (on S3 too); released weights' under the work directory
    where = runs_location(cfg.output.root if source.trained else workdir)
    fs, storage_path = storage.filesystem_and_path(where)
    trainer = TorchTrainer(
        eval_loop_per_worker,
        train_loop_config=dict(cfg=cfg.to_dict(), checkpoint=source.weights, trained=source.trained,
                               num_videos=num_videos, use_ema=use_ema),
        scaling_config=worker_scaling(cfg, gpu),
        run_config=RunConfig(name=f"eval-{cfg.output.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                             storage_path=storage_path, storage_filesystem=fs if storage.is_remote(where) else None),
        datasets=datasets_for(cfg, splits=("val",)),
        dataset_config=SplitDataConfig(),
    )
    out = trainer.fit().return_value
    if out.get("error"):
        raise EvaluationCountError(out["error"])
    return EvalResult(top1=out["eval_top1"], top5=out["eval_top5"], mean_class_acc=out["eval_mean_class_acc"],
                      videos=int(out["eval_videos"]), corrupt=int(out["eval_corrupt"]),
                      confusion=np.asarray(out["confusion"], dtype=np.int64))


def log_evaluation(source: EvalSource, res: EvalResult, data: str, workdir: str) -> dict:
    """Log `eval_*` metrics and the confusion matrix: into the training run when its store is here;
    else into a new evaluation run (released weights: in the config's store, tagged with the
    source file and its sha256, so `vfn compare` shows them beside trained runs)."""
    cfg = source.cfg
    uri, run_id, new_run = eval_run(source, workdir)
    tags = {"eval.data": storage.absolute(data), "eval.views": source.views}
    log_metrics_once(uri, run_id, res.metrics("eval_"), tags)
    labels = read_label_names(cfg.data.labels) if cfg.data.labels and Path(cfg.data.labels).is_file() else None
    log_confusion(uri, run_id, res.confusion, labels, f"eval {cfg.output.name}: top-1 {100 * res.top1:.1f}%",
                  "eval_confusion_matrix.png")
    if new_run:
        finish_run(uri, run_id)
    return {"mlflow_run_id": run_id, "tracking_uri": uri}


def eval_run(source: EvalSource, workdir: str) -> tuple[str, str, bool]:
    """(tracking URI, run id, whether the run is new) of the MLflow run an evaluation logs to."""
    cfg = source.cfg
    if source.trained:
        if run_exists(tracking_uri(cfg), source.mlflow_run_id):
            return tracking_uri(cfg), source.mlflow_run_id, False
        cfg = cfg.with_overrides({"output.root": str(Path(workdir).resolve()), "tracking.tracking_uri": None})
        tags = {"vfn.kind": "eval"}
    else:
        tags = {"vfn.kind": "eval", "source_checkpoint": source.origin or source.weights,
                "source_sha256": file_sha256(storage.local_copy(source.weights))}
    with tempfile.TemporaryDirectory() as d:
        name = f"eval {source.origin or Path(source.weights).name if not source.trained else cfg.output.name}"
        run_id = start_run(cfg, d, run_name=name, tags={**tags, "eval.views": source.views})
    return tracking_uri(cfg), run_id, True


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
