"""A sweep's (or ablation's) MLflow parent run: the space, seeds and base config as its params,
its trials nested under it, and at the end the report, the best setting and the trials a
scheduler stopped (marked KILLED: Tune kills such a trial mid-run)."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.entities import Param

from vfn.config.schema import ExperimentConfig
from vfn.config.sweep import SweepSpec

from .runs import experiment_id, mlflow_client, tracking_uri


def open_parent_run(base: ExperimentConfig, spec: SweepSpec, kind: str, run_id: str | None) -> tuple[str, str]:
    """(run id, tracking URI) of the parent run: `run_id` reopened (a restored sweep), else created."""
    uri = tracking_uri(base)
    client = mlflow_client(uri)
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


def finish_parent_run(uri: str, run_id: str, report: list[Path], best: tuple[str, float, str] | None,
                      failed: int, seconds: float, stopped: dict[str, int]) -> None:
    """The report files, `best` (metric, value, setting), the failure count and wall time; the
    `stopped` trials (trial id -> last epoch) marked KILLED; then the parent run is FINISHED."""
    client = mlflow_client(uri)
    for path in report:
        client.log_artifact(run_id, str(path), "report")
    if best is not None:
        metric, value, setting = best
        client.log_metric(run_id, f"best_{metric}", value)
        client.set_tag(run_id, "best_setting", setting)
    client.log_metric(run_id, "trials_failed", failed)
    client.log_metric(run_id, "wall_time_s", seconds)
    close_stopped_trials(client, run_id, stopped)
    client.set_terminated(run_id, "FINISHED")


def close_stopped_trials(client, parent_run_id: str, stopped: dict[str, int]) -> None:
    """Mark KILLED the MLflow runs of the trials a scheduler stopped. Tune kills such a trial
    mid-run: its run stayed RUNNING forever, or ended FAILED when the kill hit `run_training`'s
    error path first. One query per trial, so a sweep of any size is covered (a search returns
    1000 runs at most)."""
    if not stopped:
        return
    experiment = client.get_run(parent_run_id).info.experiment_id
    for trial_id, epoch in stopped.items():
        for run in client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                                    f"and tags.`vfn.trial_id` = '{trial_id}'"):
            client.set_tag(run.info.run_id, "vfn.stopped", f"by the scheduler after epoch {epoch}")
            client.set_terminated(run.info.run_id, "KILLED")
