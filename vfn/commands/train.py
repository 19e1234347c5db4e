"""`vfn train EXPERIMENT.yaml [key=value ...]`: one Ray Train run, tracked in MLflow.

Re-running the same command continues the run from its last checkpoint (same MLflow run);
`output.name=NEW` starts a separate run. Configuration mistakes fail here, before Ray starts.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML (see experiments/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=0.05")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local, or $RAY_ADDRESS)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--verbose", action="store_true", help="stream worker logs to this terminal")


def run(args: argparse.Namespace) -> int:
    import yaml

    from vfn.config.load import load_config

    cfg = load_config(args.experiment, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from vfn.training.driver import TrainingError, run_training

    init = {"log_to_driver": args.verbose, **({"address": args.address} if args.address else {})}
    try:
        result = run_training(cfg, ray_init_kwargs=init)
    except TrainingError as e:
        print(f"vfn train: {e}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


def summary(result) -> str:
    m = result.metrics
    # a lost worker (Ray Train restarts the group) or a re-run of an interrupted command
    restarts = f", resumed from a checkpoint {m['restarts']} time(s)" if m.get("restarts") else ""
    steps = f"{m.get('epoch')} epochs, {m.get('global_step')} optimiser steps"
    if result.already_finished:
        head = f"had already finished: {steps} (nothing to train; output.name=NEW_NAME starts another run)"
    else:
        head = f"finished in {result.wall_s:.0f} s: {steps}{restarts}"
    lines = [f"run '{result.name}' {head}"]
    if "val_top1" in m and m["val_top1"] >= 0:
        lines.append(
            f"  val top-1 {100 * m['val_top1']:.2f}%  top-5 {100 * m['val_top5']:.2f}%  "
            f"mean class {100 * m['val_mean_class_acc']:.2f}%  (best top-1 {100 * m.get('best_val_top1', -1):.2f}%)"
        )
    if result.corrupt_note:
        lines.append(f"  {result.corrupt_note}")
    lines.append(f"  run directory:   {result.run_dir}")
    if result.best_checkpoint:
        lines.append(f"  best checkpoint: {result.best_checkpoint}")
    if result.mlflow_run_id:
        lines.append(f"  MLflow run {result.mlflow_run_id} in {result.tracking_uri}")
        if result.tracking_uri.startswith("sqlite:"):
            lines.append(f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}")
    return "\n".join(lines)
