"""Tune trial schedulers by name: the place a new one (PBT, HyperBand) goes.

A scheduler is a builder from the sweep's `scheduler:` section and the base experiment's epoch
count; its name goes into `vfn.config.names.SCHEDULERS` and its settings into `SchedulerSpec`.
"""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from vfn.config.sweep import SchedulerSpec


def asha(spec: SchedulerSpec, epochs: int) -> TrialScheduler:
    """Successive halving over epochs (Tune's `training_iteration`)."""
    # one past the last epoch: a trial that reaches the end finishes on its own instead of being
    # stopped (killed) at its final report
    return ASHAScheduler(time_attr="training_iteration", grace_period=spec.grace_period,
                         reduction_factor=spec.reduction_factor, max_t=spec.max_t or epochs + 1)


def fifo(spec: SchedulerSpec, epochs: int) -> None:
    """Every trial runs to its end (Tune's default FIFO scheduler)."""
    return None


# one builder per name in vfn.config.names.SCHEDULERS (tests/tuning/test_schedulers.py checks both lists)
BUILDERS: dict[str, Callable[[SchedulerSpec, int], TrialScheduler | None]] = {"asha": asha, "fifo": fifo}


def build_scheduler(spec: SchedulerSpec | None, epochs: int) -> TrialScheduler | None:
    """The sweep's scheduler (None: Tune's FIFO)."""
    return BUILDERS[spec.type](spec, epochs) if spec is not None else None
