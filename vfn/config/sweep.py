"""Sweep and ablation specs: a base experiment, a search space over any config key, and how to run it.

    name: design-ablation
    base: quickstart.yaml              # experiment YAML, relative to this file
    overrides: {optim.epochs: 4}       # fixed changes for every trial
    space:
      model.design: {grid: [parallel, sequential, spatial]}
      model.focal_levels: {grid: [[1, 1, 1, 1], [2, 2, 2, 2]]}   # per-stage lists are values like any other
      optim.lr: {loguniform: [1.0e-3, 1.0e-1]}
    seeds: [0, 1, 2]                   # every configuration runs once per seed
    metric: val_top1
    mode: max
    trial: {num_workers: 1, cpus_per_worker: 1}
    scheduler: {type: asha, grace_period: 1}

Unknown keys in the spec or in the space fail before Ray starts (with the closest valid key);
values are checked per trial, so an impossible combination fails that trial only.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vfn.errors import ConfigError

from .keys import check, set_dotted
from .load import absolutize, load_config, read_yaml
from .names import SCHEDULERS
from .schema import ExperimentConfig

_STRICT = ConfigDict(extra="forbid")


class SearchDim(BaseModel):
    """Exactly one of: grid (every value), choice (sampled), uniform/loguniform [low, high], randint [low, high)."""

    model_config = _STRICT
    grid: list[Any] | None = Field(None, description="every value, crossed with the other grids")
    choice: list[Any] | None = Field(None, description="one value sampled per sample")
    uniform: tuple[float, float] | None = Field(None, description="[low, high], sampled uniformly")
    loguniform: tuple[float, float] | None = Field(None, description="[low, high], 0 < low, sampled on a log scale")
    randint: tuple[int, int] | None = Field(None, description="[low, high), an integer")

    @model_validator(mode="after")
    def _one(self):
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid/choice/uniform/loguniform/randint, got {given or 'none'}")
        kind = given[0]
        if kind in ("grid", "choice") and not getattr(self, kind):
            raise ValueError(f"{kind} needs at least one value")
        if kind in ("uniform", "loguniform", "randint"):
            low, high = getattr(self, kind)
            if not low < high or (kind == "loguniform" and low <= 0):
                raise ValueError(f"{kind} needs 0 < low < high for loguniform, low < high otherwise; got {[low, high]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.model_dump().items() if v is not None)


class TrialResources(BaseModel):
    model_config = _STRICT
    num_workers: int = Field(1, gt=0, description="Ray Train workers per trial")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per Train worker of a trial")
    use_gpu: Literal["auto"] | bool = Field("auto", description="auto: a GPU per worker when the cluster has one")


class SchedulerSpec(BaseModel):
    """Which Tune scheduler stops trials early (`vfn.tuning.schedulers` builds it), and its settings."""

    model_config = _STRICT
    type: Literal[SCHEDULERS] = Field("asha", description="asha (stops weak trials at rungs) or fifo (none)")
    grace_period: int = Field(1, gt=0, description="asha: epochs before a trial may be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="asha: 1/share of trials kept at each rung")
    max_t: int | None = Field(None, gt=0, description="asha: default: the base experiment's optim.epochs")


class ReportSpec(BaseModel):
    model_config = _STRICT
    rows: list[str] | None = Field(None, description="config keys that make a row (default: the space keys)")
    title: str | None = Field(None, description="title of the report (default: the sweep name)")


class SweepSpec(BaseModel):
    model_config = _STRICT
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="sweep name (default: YAML stem)")
    base: str = Field(..., description="the experiment YAML every trial starts from (relative to this file)")
    overrides: dict[str, Any] = Field({}, description="dotted keys set on the base for every trial")
    space: dict[str, SearchDim] = Field(..., min_length=1, description="dotted key -> its search dimension")
    seeds: list[int] = Field([0], min_length=1, description="each setting runs once per seed")
    num_samples: int = Field(1, gt=0, description="samples of the random dimensions (grids are crossed)")
    metric: str = Field("val_top1", description="what the scheduler and the report rank by")
    mode: Literal["max", "min"] = Field("max", description="whether higher metric is better")
    trial: TrialResources = TrialResources()
    max_concurrent_trials: int | None = Field(None, gt=0, description="default: as many as the cluster fits")
    scheduler: SchedulerSpec | None = None
    report: ReportSpec = ReportSpec()

    @property
    def row_keys(self) -> list[str]:
        return self.report.rows or list(self.space)

    @property
    def trial_count(self) -> int:
        """Tune's trial count: every grid crossed with every other and the seeds, times num_samples."""
        count = self.num_samples * len(self.seeds)
        for dim in self.space.values():
            count *= len(dim.grid) if dim.grid is not None else 1
        return count


def trial_settings(spec: SweepSpec) -> list[dict[str, Any]]:
    """The settings Tune will run, before it runs them (`vfn sweep --dry-run`): every grid crossed
    with every other and the seeds, `num_samples` times; a sampled dimension shows as its
    distribution (`loguniform[0.0001, 0.01]`), Tune draws the values."""
    grids = {k: d.grid for k, d in spec.space.items() if d.grid is not None}
    sampled = {k: f"{d.kind}{list(getattr(d, d.kind))}" for k, d in spec.space.items() if d.grid is None}
    crossed = [dict(zip(grids, values)) for values in itertools.product(*grids.values())]
    return [{**sampled, "seed": seed, **setting}  # a `seed` in the space wins, as in the trials
            for _ in range(spec.num_samples) for setting in crossed for seed in spec.seeds]


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepSpec, ExperimentConfig]:
    """Read a sweep YAML (with `extends:`, like an experiment's) and its base experiment; every key
    is checked before Ray starts."""
    path = Path(path)
    spec = check(SweepSpec, read_yaml(path, "sweep"), path.name)
    if spec.name is None:
        spec.name = path.stem
    base = load_config(path.parent / spec.base)
    # the command line's overrides win over the spec's; relative paths in either resolve against the
    # working directory (the trials run in Ray's own)
    for layer in (spec.overrides, overrides):
        base = absolutize(base.with_overrides(layer)) if layer else base
    for key in (*spec.space, *spec.row_keys):  # names only; values are the trials' business
        if key == "seed":
            continue
        try:
            set_dotted(ExperimentConfig, base.to_dict(), key, None)
        except ConfigError as e:
            raise ConfigError(f"{path.name}: space: {e}") from None
    return spec, base
