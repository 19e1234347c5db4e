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
from typing import Any

from . import ray_setup, storage
from .config import ExperimentConfig, validate
from .report import TrialOutcome, ablation_rows, model_cost, row_name, write_report
from .sweep_progress import SweepProgress, quiet_ray_output, trial_error_line
from .sweep_spec import SweepSpec
from .tracking import experiment_id, mlflow_client, tracking_uri

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


def trial_overrides(spec: SweepSpec, params: dict[str, Any], seed: int, trial_id: str,
                    parent_run_id: str | None) -> dict[str, Any]:
    t = spec.trial
    return {
        **params,
        "seed": seed,
        "output.name": f"{spec.name}-{trial_id}",
        "scaling.num_workers": t.num_workers,
        "scaling.cpus_per_worker": t.cpus_per_worker,
        "scaling.use_gpu": t.use_gpu,
        **({"tracking.parent_run_id": parent_run_id} if parent_run_id else {}),
    }


def _run_trial(config: dict[str, Any], *, base: dict[str, Any], spec: dict[str, Any],
               parent_run_id: str | None) -> None:
    """One Tune trial: an ordinary training run of the trial's config, reporting to Tune."""
    from ray import tune

    spec_ = SweepSpec.model_validate(spec)
    trial_id = tune.get_context().get_trial_id()
    # an impossible value in the search space raises ConfigError here, before torch and Ray Train
    # are imported: this trial fails at once with its reason
    overrides = trial_overrides(spec_, config["params"], config["seed"], trial_id, parent_run_id)
    cfg = validate(base).with_overrides(overrides)
    from ray.tune.integration.ray_train import TuneReportCallback

    from .train import run_training

    setting = ", ".join(f"{k}={v}" for k, v in config["params"].items())
    run_training(
        cfg,
        parent_run_id=parent_run_id,
        run_name=f"{setting} seed={config['seed']}"[:250],
        extra_tags={"vfn.sweep": spec_.name or "", "vfn.trial_id": trial_id},
        progress=False,
        callbacks=[TuneReportCallback()],
    )


def _resources(spec: SweepSpec, base: ExperimentConfig) -> tuple[int, bool]:
    """(max concurrent trials, GPU) from the cluster's resources and one trial's needs.

    A trial needs its Train workers' CPUs plus room for at least one decode task: trials that
    took every CPU for workers would starve their own Ray Data pipelines and never progress.
    """
    import ray

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


def _parent_run(base: ExperimentConfig, spec: SweepSpec, state_path: str, kind: str) -> tuple[str | None, str | None]:
    """The sweep's MLflow parent run: reopened from the state file on restore, else created."""
    if not base.tracking.enabled:
        return None, None
    from mlflow.entities import Param

    uri = tracking_uri(base)
    client = mlflow_client(uri)
    if (text := storage.read_text(state_path)) is not None:
        run_id = json.loads(text).get("parent_run_id")
        if run_id:
            client.update_run(run_id, status="RUNNING")
            return run_id, uri
    exp_id = experiment_id(client, base, uri)  # the same experiment (and artifact store) as the trials
    run = client.create_run(exp_id, run_name=spec.name, tags={"vfn.kind": kind, "vfn.sweep": spec.name or ""})
    params = [Param(f"space.{k}", json.dumps(d.model_dump(exclude_none=True))[:6000]) for k, d in spec.space.items()]
    params += [Param("seeds", json.dumps(spec.seeds)), Param("metric", spec.metric), Param("mode", spec.mode),
               Param("num_samples", str(spec.num_samples)),
               Param("scheduler", spec.scheduler.type if spec.scheduler else "fifo")]
    params += [Param(f"base.{k}", str(v)[:6000]) for k, v in base.flat().items()]
    client.log_batch(run.info.run_id, params=params)  # split into MLflow's per-request limits by the client
    client.log_dict(run.info.run_id, spec.model_dump(mode="json", exclude_none=True), "sweep.yaml")
    client.log_dict(run.info.run_id, base.to_dict(), "base_config.yaml")
    return run.info.run_id, uri


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
        parent_run_id, uri = _parent_run(base, spec, state_path, kind)
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


def fit_tuner(spec: SweepSpec, base: ExperimentConfig, exp_dir: str, results: str, parent_run_id: str | None,
              concurrent: int, kind: str, callbacks: list, verbose: bool):
    """A new Tuner, or the interrupted one restored from `exp_dir`; returns its result grid."""
    from ray import tune

    trainable = tune.with_resources(
        functools.partial(_run_trial, base=base.to_dict(), spec=spec.model_dump(mode="json"),
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
        scheduler = None
        if spec.scheduler and spec.scheduler.type == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="training_iteration", grace_period=spec.scheduler.grace_period,
                                      reduction_factor=spec.scheduler.reduction_factor,
                                      # one past the last epoch: a trial that reaches the end finishes on
                                      # its own instead of being stopped (killed) at its final report
                                      max_t=spec.scheduler.max_t or base.optim.epochs + 1)
        tuner = tune.Tuner(
            trainable,
            param_space={"params": {k: d.to_tune() for k, d in spec.space.items()},
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
        client = mlflow_client(result.tracking_uri)
        for path in result.report.values():
            client.log_artifact(result.parent_run_id, str(path), "report")
        ok = [o for o in result.outcomes if o.error is None and spec.metric in o.metrics]
        if ok:
            best = (max if spec.mode == "max" else min)(ok, key=lambda o: o.metrics[spec.metric])
            client.log_metric(result.parent_run_id, f"best_{spec.metric}", best.metrics[spec.metric])
            client.set_tag(result.parent_run_id, "best_setting", row_name(best.setting, keys) + f", seed={best.seed}")
        client.log_metric(result.parent_run_id, "trials_failed", sum(o.error is not None for o in result.outcomes))
        client.log_metric(result.parent_run_id, "wall_time_s", result.seconds)
        close_stopped_trials(client, result.parent_run_id, stopped_trials(result.outcomes, base))
        client.set_terminated(result.parent_run_id, "FINISHED")


def stopped_trials(outcomes: list[TrialOutcome], base: ExperimentConfig) -> dict[str, int]:
    """trial id -> last epoch, of the trials that ended without error before their last epoch:
    those a scheduler (ASHA) stopped."""
    return {o.trial_id: int(o.metrics["epoch"]) for o in outcomes if o.error is None and "epoch" in o.metrics
            and o.metrics["epoch"] < base.with_overrides(o.setting).optim.epochs}


def close_stopped_trials(client, parent_run_id: str, stopped: dict[str, int]) -> None:
    """Mark KILLED the MLflow runs of `stopped_trials`. Tune kills such a trial mid-run: its run
    stayed RUNNING forever, or ended FAILED when the kill hit `run_training`'s error path first.
    One query per trial, so a sweep of any size is covered (a search returns 1000 runs at most)."""
    if not stopped:
        return
    experiment = client.get_run(parent_run_id).info.experiment_id
    for trial_id, epoch in stopped.items():
        for run in client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                                    f"and tags.`vfn.trial_id` = '{trial_id}'"):
            client.set_tag(run.info.run_id, "vfn.stopped", f"by the scheduler after epoch {epoch}")
            client.set_terminated(run.info.run_id, "KILLED")
