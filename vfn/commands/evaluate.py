"""`vfn eval CHECKPOINT_OR_RUN --data SHARDS`: multi-view evaluation (clips x crops, softmax-averaged),
every video counted once across workers; printed and logged to MLflow.

CHECKPOINT is a vfn run (or one of its checkpoints), whose saved config describes it, a run's MLflow
model (`runs:/<run id>/model`, `models:/NAME/VERSION`, from `--tracking-uri`), or released
weights / a plain state dict, described by `--config EXPERIMENT.yaml` and/or `--model NAME` and
`key=value` overrides (e.g. `vfn eval video-focalnet_tiny_k400.pth --data val --config experiments/k400_tiny.yaml`).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt, a checkpoint directory, a run directory (its best "
                        "checkpoint), an MLflow model (runs:/<run id>/model, models:/NAME/VERSION), or released "
                        "weights / a plain state dict (with --config or --model)")
    parser.add_argument("--data", required=True, help="Parquet shards of the split to evaluate")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. eval.num_clips=4 eval.num_crops=3")
    parser.add_argument("--config", default=None, help="released weights: the experiment file describing them")
    parser.add_argument("--model", default=None, help="released weights: the zoo model (e.g. videofocalnet_tiny)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes evaluating side by side, as Ray Train workers (default: as trained)")
    parser.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    parser.add_argument("--workdir", default=".",
                        help="where released weights' evaluation keeps its Ray storage (a trained run's stays beside "
                             "the run) and where a fallback MLflow store goes")
    parser.add_argument("--no-mlflow", action="store_true", help="print only")
    parser.add_argument("--address", default=None, help="Ray cluster address")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config the evaluation would use (the run's, or --config/--model with the "
                        "overrides) and exit, before Ray")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store of runs:/ and models:/ URIs (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")


def run(args: argparse.Namespace) -> int:
    from vfn.evaluation.metrics import EvaluationCountError
    from vfn.model.weights import WeightsError
    from vfn.training.checkpoints import RunCheckpointError

    try:
        return print_config(args) if args.print_config else evaluate(args)
    except (RunCheckpointError, WeightsError, EvaluationCountError) as e:
        print(f"vfn eval: {e}", file=sys.stderr)
        return 2


def evaluate(args: argparse.Namespace) -> int:
    from vfn.evaluation.driver import run_evaluation

    init = {"log_to_driver": False, **({"address": args.address} if args.address else {})}
    res, info = run_evaluation(args.checkpoint, args.data, overrides=args.overrides, config_file=args.config,
                               model=args.model, workdir=args.workdir,
                               num_workers=args.workers, use_ema=args.ema, log_to_mlflow=not args.no_mlflow,
                               ray_init_kwargs=init, tracking_uri=args.tracking_uri)
    print(f"{info['checkpoint']} ({info['views']} views, {info['seconds']:.0f} s)")
    print(res.summary())
    if info.get("mlflow_run_id"):
        print(f"logged to MLflow run {info['mlflow_run_id']} ({info['tracking_uri']})")
    return 0

def print_config(args: argparse.Namespace) -> int:
    import yaml

    from vfn.evaluation.driver import eval_source

    source = eval_source(args.checkpoint, args.data, args.overrides, args.config, args.model, args.tracking_uri,
                         args.workdir)
    cfg = source.cfg.with_overrides({"scaling.num_workers": args.workers}) if args.workers else source.cfg
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0
