"""The Ray Train worker of `vfn eval`: its uneven share of the videos, then one all-reduce.

Every evaluation worker imports this module (it holds the loop Ray pickles), so it imports only
what a worker runs: the model, the metrics, the checkpoint reader; not MLflow or the driver.
"""

from __future__ import annotations

import ray.train
import ray.train.torch
import torch.nn as nn

from vfn.config.schema import ExperimentConfig
from vfn.model.weights import read_state_dict
from vfn.runtime import storage
from vfn.training.build import build_model, compile_for_eval, eval_batch_clips
from vfn.training.checkpoints import load_state
from vfn.training.step import autocast_for, resolve_precision

from .metrics import EvalAccumulator, EvaluationCountError, evaluate_batches


def load_eval_weights(model: nn.Module, config: dict) -> None:
    """A worker's weights: the training checkpoint's model (or EMA) entry, or the whole state dict."""
    if config["trained"]:
        state = load_state(config["checkpoint"])
        sd = state["ema"] if config.get("use_ema") and state.get("ema") else state["model"]
    else:
        sd = read_state_dict(storage.local_copy(config["checkpoint"]))
    model.load_state_dict(sd)


def eval_loop_per_worker(config: dict) -> dict | None:
    """One evaluation worker: its uneven share of the videos, then one all-reduce. A counting error
    comes back as `{"error": ...}` (Ray would wrap an exception in a traceback) for the driver to raise."""
    cfg = ExperimentConfig.model_validate(config["cfg"])
    device = ray.train.torch.get_device()
    model = build_model(cfg, load_pretrained=False)
    load_eval_weights(model, config)
    model.to(device)
    autocast = autocast_for(resolve_precision(cfg, device), device)
    pad_to = None
    if cfg.model.compile:
        model, pad_to = compile_for_eval(model, cfg, device, autocast).module, eval_batch_clips(cfg)
    acc = EvalAccumulator(cfg.data.num_classes, config["num_videos"], device)
    evaluate_batches(model, ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=cfg.eval.batch_size),
                     acc, device, autocast, pad_to=pad_to)
    acc.all_reduce()
    try:
        res = acc.result()
    except EvaluationCountError as e:
        return {"error": str(e)}
    if ray.train.get_context().get_world_rank() == 0:
        return {**res.metrics("eval_"), "confusion": res.confusion.tolist()}
    return None
