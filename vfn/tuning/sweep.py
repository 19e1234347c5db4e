"""`vfn sweep` / `vfn ablate`: Ray Tune trials, each a full Ray Train run, nested in MLflow.

Ray 2.60's pattern for Train V2: a Tune *function* trainable launches a `TorchTrainer`
(through `run_training`, the same entry point as `vfn train`) with `TuneReportCallback`, so
per-epoch metrics reach Tune's scheduler (ASHA). The trial driver itself holds no CPU (only a
token of memory); the trainer's workers do, and `max_concurrent_trials` keeps trials within the
cluster.

Re-running the same command after the driver died restores the experiment (`Tuner.restore`):
finished trials are kept, unfinished ones continue from their last training checkpoint (each
trial's training run is named after its trial id, so `run_training` resumes it).
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from vfn.config.schema import ExperimentConfig
from vfn.config.sweep import SearchDim, SweepSpec
from vfn.runtime import ray_setup, storage
from vfn.tracking.sweeps import finish_parent_run, open_parent_run
from vfn.training.build import model_cost

from .progress import SweepProgress, quiet_ray_output, trial_error_line
from .report import TrialOutcome, ablation_rows, row_name, write_report
from .schedulers import build_scheduler
from .trial import run_trial

STATE_FILE = "vfn_sweep.json"


@dataclass
class SweepResult:
    name: str
    experiment_dir: str  # a path or a URI (s3://...), under `<output.root>/ray_results`
    parent_run_id: str | None
    tracking_uri: str | None
    outcomes: list[TrialOutcome]
    seconds: float
    report: dict[str, Path] | None = None  # local files (also copied to experiment_dir/report)
    table: str | None = None


def _resources(spec: SweepSpec, base: ExperimentConfig) -> tuple[int, bool]:
    """(max concurrent trials, GPU) from the cluster's resources and one trial's needs.

    A trial needs its Train workers' CPUs plus room for at least one decode task: trials that
    took every CPU for workers would starve their own Ray Data pipelines and never progress.
    """
    total = ray.cluster_resources()
    t = spec.trial
    use_gpu = ray_setup.use_gpu(base.with_overrides({"scaling.use_gpu": t.use_gpu}))  # as the trials resolve it
    cpus = t.num_workers * t.cpus_per_worker + base.data.decode_cpus
    fits = int(total.get("CPU", 0) // cpus)
    if use_gpu:
        fits = min(fits, int(total.get("GPU", 0) // t.num_workers))
    if spec.max_concurrent_trials:  # trusted as given: an autoscaling cluster grows to fit it
        return spec.max_concurrent_trials, use_gpu
    if fits < 1:
        raise RuntimeError(
            f"one trial needs {t.num_workers} workers x {t.cpus_per_worker} CPU + {base.data.decode_cpus} CPU for "
            f"decoding{' + 1 GPU per worker' if use_gpu else ''}; the cluster has {total.get('CPU', 0):g} CPUs, "
            f"{total.get('GPU', 0):g} GPUs now: lower trial.num_workers, trial.cpus_per_worker or data.decode_cpus, "
            "or on an autoscaling cluster set max_concurrent_trials"
        )
    return fits, use_gpu


def parent_run(base: ExperimentConfig, spec: SweepSpec, state_path: str, kind: str) -> tuple[str | None, str | None]:
    """The sweep's MLflow parent run: reopened from the state file on restore, else created."""
    if not base.tracking.enabled:
        return None, None
    text = storage.read_text(state_path)
    return open_parent_run(base, spec, kind, json.loads(text).get("parent_run_id") if text else None)


def _outcomes(result_grid, spec: SweepSpec) -> list[TrialOutcome]:
    outcomes = []
    for r in result_grid:
        config = r.config or {}
        error = trial_error_line(r.error) if r.error is not None else None
        outcomes.append(TrialOutcome(
            setting=dict(config.get("params", {})), seed=int(config.get("seed", 0)),
            metrics={k: v for k, v in (r.metrics or {}).items() if isinstance(v, (int, float))},
            error=error, trial_id=(r.metrics or {}).get("trial_id", ""),
        ))
    return outcomes


def run_sweep(spec: SweepSpec, base: ExperimentConfig, *, kind: str = "sweep",
              ray_init_kwargs: dict | None = None, verbose: bool = False) -> SweepResult:
    """Run (or resume) a sweep. Unless `verbose`, the terminal shows `SweepProgress`'s lines and
    Ray's own output goes to a log file under the sweep's directory (its path is printed)."""
    t0 = time.time()
    results = storage.join(storage.absolute(base.output.root), "ray_results")  # Tune takes URIs as well
    exp_dir = storage.join(results, spec.name)
    state_path = storage.join(exp_dir, STATE_FILE)
    # a local Ray of our own unless a cluster is named (a stale /tmp/ray/ray_current_cluster never
    # matters). The dashboard serves the State API that Ray Train's PlacementGroupCleaner needs: when
    # Tune stops a trial (ASHA, max_t) it kills the trial's controller, and only the cleaner then frees
    # the workers' placement group; without it the CPUs leak and later trials wait forever
    log_path = ray_log_path(exp_dir, spec)
    with quiet_ray_output(log_path, verbose):
        ray_setup.init_ray({"include_dashboard": True, "log_to_driver": verbose, **(ray_init_kwargs or {})})
        concurrent, _ = _resources(spec, base)
        parent_run_id, uri = parent_run(base, spec, state_path, kind)
        if not verbose:
            print(f"{kind} '{spec.name}': {spec.trial_count} trials, up to {concurrent} at a time; "
                  f"Ray's own output: {log_path} (--verbose shows it here)", flush=True)
        storage.write_text(state_path, json.dumps({"parent_run_id": parent_run_id, "tracking_uri": uri,
                                                   "kind": kind}))
        progress = SweepProgress(spec.trial_count, base.optim.epochs, spec.metric, spec.row_keys)
        grid = fit_tuner(spec, base, exp_dir, results, parent_run_id, concurrent, kind,
                         callbacks=[] if verbose else [progress], verbose=verbose)
    outcomes = _outcomes(grid, spec)
    result = SweepResult(spec.name or "", exp_dir, parent_run_id, uri, outcomes, time.time() - t0)
    _finish(result, spec, base, kind)
    return result


def ray_log_path(exp_dir: str, spec: SweepSpec) -> Path:
    """Where a sweep's Ray output goes: its directory, or a local file when that is a bucket."""
    if storage.is_remote(exp_dir):
        return Path(tempfile.gettempdir()) / f"vfn-{spec.name}-ray.log"
    return Path(exp_dir) / "ray.log"


def tune_domain(dim: SearchDim):
    """A search dimension as Ray Tune's sampler (grid, choice, uniform, loguniform, randint)."""
    value = getattr(dim, dim.kind)
    return {
        "grid": lambda: tune.grid_search(list(value)),
        "choice": lambda: tune.choice(list(value)),
        "uniform": lambda: tune.uniform(*value),
        "loguniform": lambda: tune.loguniform(*value),
        "randint": lambda: tune.randint(*value),
    }[dim.kind]()


def fit_tuner(spec: SweepSpec, base: ExperimentConfig, exp_dir: str, results: str, parent_run_id: str | None,
              concurrent: int, kind: str, callbacks: list, verbose: bool):
    """A new Tuner, or the interrupted one restored from `exp_dir`; returns its result grid."""
    trainable = tune.with_resources(
        functools.partial(run_trial, base=base.to_dict(), spec=spec.model_dump(mode="json"),
                          parent_run_id=parent_run_id),
        # the trial driver only waits on its trainer: it reserves a token of memory, no CPU, so a
        # trial's CPUs all go to its Train workers and N-CPU clusters fit N/(workers*cpus) trials
        {"cpu": 0, "memory": 64 * 2**20},
    )
    if tune.Tuner.can_restore(exp_dir):
        print(f"{kind}: resuming {exp_dir} (finished trials are kept)")
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        scheduler = build_scheduler(spec.scheduler, base.optim.epochs)
        tuner = tune.Tuner(
            trainable,
            param_space={"params": {k: tune_domain(d) for k, d in spec.space.items()},
                         "seed": tune.grid_search(spec.seeds)},
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                        scheduler=scheduler, max_concurrent_trials=concurrent),
            run_config=tune.RunConfig(name=spec.name, storage_path=results, verbose=1 if verbose else 0,
                                      callbacks=callbacks),
        )
    return tuner.fit()


def _finish(result: SweepResult, spec: SweepSpec, base: ExperimentConfig, kind: str) -> None:
    """Write the results table (and for ablations the report), log them to the parent run."""
    remote = storage.is_remote(result.experiment_dir)
    if remote:
        out_dir = Path(tempfile.mkdtemp(prefix=f"vfn-{spec.name}-report-"))
    else:
        out_dir = Path(result.experiment_dir, "report")
    keys = spec.row_keys
    cost = {}
    for o in result.outcomes:
        name = row_name(o.setting, keys)
        if name not in cost:
            try:
                cost[name] = model_cost(base.with_overrides(o.setting))
            except Exception:  # an impossible setting: its trial failed already, its cost is unknown
                cost[name] = (math.nan, math.nan)
    rows = ablation_rows(result.outcomes, keys, cost)
    title = spec.report.title or f"{spec.name}: {', '.join(keys)}"
    chance = 1.0 / base.data.num_classes
    result.report = write_report(rows, keys, out_dir, title, chance)
    result.table = result.report["markdown"].read_text()
    if remote:
        for path in result.report.values():
            storage.upload(path, storage.join(result.experiment_dir, "report", path.name))
    if result.parent_run_id:
        ok = [o for o in result.outcomes if o.error is None and spec.metric in o.metrics]
        top = (max if spec.mode == "max" else min)(ok, key=lambda o: o.metrics[spec.metric]) if ok else None
        best = None
        if top:
            best = (spec.metric, top.metrics[spec.metric], row_name(top.setting, keys) + f", seed={top.seed}")
        finish_parent_run(result.tracking_uri, result.parent_run_id, list(result.report.values()), best,
                          sum(o.error is not None for o in result.outcomes), result.seconds,
                          stopped_trials(result.outcomes, base))


def stopped_trials(outcomes: list[TrialOutcome], base: ExperimentConfig) -> dict[str, int]:
    """trial id -> last epoch, of the trials that ended without error before their last epoch:
    those a scheduler (ASHA) stopped."""
    return {o.trial_id: int(o.metrics["epoch"]) for o in outcomes if o.error is None and "epoch" in o.metrics
            and o.metrics["epoch"] < base.with_overrides(o.setting).optim.epochs}
