"""`vfn sweep SWEEP.yaml [key=value ...]`: a Ray Tune sweep of full training runs.

Overrides apply to the base experiment (e.g. `output.root=/mnt/runs optim.epochs=10`).
Re-running the same command after an interruption resumes the sweep.
"""

from __future__ import annotations

import argparse

KIND = "sweep"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="sweep YAML (see experiments/sweeps/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the base experiment")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local or RAY_ADDRESS)")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's and Tune's own output here instead of in the sweep's ray.log")
    parser.add_argument("--dry-run", action="store_true", help="list the trials it would run and exit (no Ray)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved spec and base experiment and exit")


def print_trials(spec, kind: str) -> None:
    from vfn.config.sweep import trial_settings

    settings = trial_settings(spec)
    keys = list(settings[0])
    print(f"{kind} '{spec.name}': {len(settings)} trials, {spec.trial.num_workers} worker(s) each; "
          f"ranked by {spec.metric} ({spec.mode})")
    for i, setting in enumerate(settings, 1):
        print(f"  {i:3d}  " + "  ".join(f"{k}={setting[k]}" for k in keys))


def run(args: argparse.Namespace, kind: str = KIND) -> int:
    from vfn.config.sweep import load_sweep
    from vfn.training.driver import make_plan
    from vfn.tuning.sweep import run_sweep

    spec, base = load_sweep(args.spec, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump({"sweep": spec.model_dump(mode="json"), "base": base.to_dict()}, sort_keys=False), end="")
        return 0
    if args.dry_run:
        print_trials(spec, kind)
        return 0
    make_plan(base)  # before Ray starts: the shards and weights every trial reads exist and give full batches
    result = run_sweep(spec, base, kind=kind, ray_init_kwargs={"address": args.address} if args.address else None,
                       verbose=args.verbose)
    failed = [o for o in result.outcomes if o.error]
    print()
    print(result.table)
    print(f"{kind} '{result.name}': {len(result.outcomes)} trials ({len(failed)} failed) in {result.seconds:.0f} s")
    from vfn.runtime.storage import is_remote

    copied = f" (and {result.experiment_dir}/report)" if is_remote(result.experiment_dir) else ""
    print(f"report: {result.report['markdown'].parent}{copied}")
    if result.parent_run_id:
        print(f"MLflow parent run {result.parent_run_id} ({result.tracking_uri})")
    return 1 if failed and len(failed) == len(result.outcomes) else 0
