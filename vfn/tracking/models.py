"""A run's best weights as an MLflow PyTorch model, and `runs:/` / `models:/` URIs back into the platform.

The checkpoint file a run logs is for resuming and for this platform; MLflow's registry,
`models:/NAME/VERSION` URIs and `mlflow.pytorch.load_model` work on MLflow models only. The logged
model is the bare `vfn.model.VideoFocalNet`, pickled by reference to this package (not MLflow's
`torch.export` format, which fixes the batch size to the input example's and loads as a graph), so
loading it needs torch, timm, mlflow and `vfn.model` (not Ray). Its signature is (B, T, 3, S, S) float32
clips, RGB normalised with the ImageNet mean and std, -> (B, classes) logits; its metadata keeps
the experiment config (frames, size, sampling: how to cut clips for it) and the class names, which
`vfn predict` and `vfn eval` read back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import timm
import torch
import torch.nn as nn
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

import vfn
from vfn.config.schema import ExperimentConfig, config_from_dict
from vfn.errors import first_line
from vfn.training.build import build_model
from vfn.training.checkpoints import RunCheckpointError

ENV = "MLFLOW_TRACKING_URI"
MODEL_NAME = "model"  # the logged model's name in its run: runs:/<run id>/model
INPUT = "float32 (B, T, 3, S, S) clips, RGB in [0, 1] normalised with the ImageNet mean and std"


def is_model_uri(location: str) -> bool:
    return str(location).startswith(("runs:/", "models:/"))


@contextlib.contextmanager
def tracking_at(uri: str):
    """MLflow's fluent API (start_run, log_model, load_model) pointed at `uri` for the block.
    `mlflow.set_tracking_uri` also sets $MLFLOW_TRACKING_URI, which `runs.default_tracking_uri`
    reads: it is put back as it was, so later runs in this process log where they would have."""
    previous, previous_env = mlflow.get_tracking_uri(), os.environ.get(ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous_env


def signature(cfg: ExperimentConfig):
    d = cfg.data
    # unnamed: MLflow's serving path turns a named tensor's JSON into a dict, which its PyTorch
    # flavour refuses, so a named signature logs a model that cannot be served
    clips = TensorSpec(np.dtype(np.float32), (-1, d.num_frames, 3, d.input_size, d.input_size))
    logits = TensorSpec(np.dtype(np.float32), (-1, d.num_classes))
    return ModelSignature(inputs=Schema([clips]), outputs=Schema([logits]))


def requirements() -> list[str]:
    """What loading the model needs (given, so MLflow does not infer them by importing everything)."""
    torch_version = torch.__version__.split("+")[0]
    return [f"torch=={torch_version}", f"timm=={timm.__version__}", f"video-focalnets=={vfn.__version__}"]


class PickleNotice(logging.Filter):
    """MLflow's warning against pickled models, which it prints at every run's end: pickling is this
    module's deliberate choice (its docstring says why), so the notice only alarms."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "by Pickle or CloudPickle" not in record.getMessage()


@contextlib.contextmanager
def without_pickle_notice():
    """MLflow's PyTorch logger without its pickle warning, for the block."""
    logger, notice = logging.getLogger("mlflow.pytorch"), PickleNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def log_best_model(uri: str, run_id: str, cfg: ExperimentConfig, state_dict: dict,
                   class_names: list[str] | None = None) -> str:
    """Log `state_dict` in the config's model as the run's MLflow model (registered under
    `tracking.register_as` when set); returns the model's URI."""
    model = build_model(cfg, load_pretrained=False)
    model.load_state_dict(state_dict)
    d = cfg.data
    example = np.zeros((1, d.num_frames, 3, d.input_size, d.input_size), np.float32)
    metadata = {"vfn_config": cfg.to_dict(), "class_names": class_names, "input": INPUT}
    with tracking_at(uri), mlflow.start_run(run_id=run_id, log_system_metrics=False), without_pickle_notice():
        info = mlflow.pytorch.log_model(model.eval(), name=MODEL_NAME, signature=signature(cfg), input_example=example,
                                        pip_requirements=requirements(), metadata=metadata,
                                        registered_model_name=cfg.tracking.register_as,
                                        serialization_format="pickle")  # the nn.Module, any batch size
    return info.model_uri


def load_logged_model(model_uri: str, uri: str) -> tuple[nn.Module, ExperimentConfig, list[str] | None]:
    """(model in eval mode on the CPU, its experiment config, its class names) of a `runs:/` or
    `models:/` URI in the store at `uri`; a one-line RunCheckpointError when it is not there or
    not a vfn model."""
    try:
        with tracking_at(uri):
            meta = mlflow.models.get_model_info(model_uri).metadata or {}
            if "vfn_config" not in meta:
                raise RunCheckpointError(f"{model_uri}: not a vfn model (its metadata has no vfn_config)")
            model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except (MlflowException, OSError) as e:
        raise RunCheckpointError(f"{model_uri}: no such MLflow model in {uri} ({first_line(e)})") from None
    return model.eval(), config_from_dict(meta["vfn_config"], f"{model_uri} (metadata)"), meta.get("class_names")


def export_state_dict(model_uri: str, uri: str, directory: str | Path) -> tuple[ExperimentConfig, Path]:
    """The weights of a logged model as a state-dict file in `directory` (what `vfn eval`'s workers
    load, as for released weights), with the model's experiment config."""
    model, cfg, _ = load_logged_model(model_uri, uri)
    path = Path(directory) / (model_uri.replace(":/", "_").replace("/", "_") + ".pth")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return cfg, path
