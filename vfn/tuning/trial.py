"""One Tune trial of a sweep: an ordinary training run of the trial's config, reporting to Tune.

Every trial actor unpickles `run_trial` and so imports this module: it imports only the config
schema, so a setting that fails validation ends its trial before torch or Ray Train is imported.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from vfn.config.schema import config_from_dict
from vfn.config.sweep import SweepSpec


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


def run_trial(config: dict[str, Any], *, base: dict[str, Any], spec: dict[str, Any],
               parent_run_id: str | None) -> None:
    """One Tune trial: an ordinary training run of the trial's config, reporting to Tune."""
    spec_ = SweepSpec.model_validate(spec)
    trial_id = tune.get_context().get_trial_id()
    # an impossible value in the search space raises ConfigError here, before torch and Ray Train
    # are imported: this trial fails at once with its reason
    overrides = trial_overrides(spec_, config["params"], config["seed"], trial_id, parent_run_id)
    cfg = config_from_dict(base).with_overrides(overrides)
    # LAZY: torch, Ray Train, MLflow: only for a setting that validated
    from ray.tune.integration.ray_train import TuneReportCallback

    # LAZY: torch: a setting that fails validation ends the trial before it loads
    from vfn.training.driver import run_training

    setting = ", ".join(f"{k}={v}" for k, v in config["params"].items())
    run_training(
        cfg,
        parent_run_id=parent_run_id,
        run_name=f"{setting} seed={config['seed']}"[:250],
        extra_tags={"vfn.sweep": spec_.name or "", "vfn.trial_id": trial_id},
        progress=False,
        callbacks=[TuneReportCallback()],
    )
