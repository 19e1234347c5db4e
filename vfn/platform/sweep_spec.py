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

import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .config import ConfigError, ExperimentConfig, absolutize, load_config, set_dotted

_STRICT = ConfigDict(extra="forbid")


class SearchDim(BaseModel):
    """Exactly one of: grid (every value), choice (sampled), uniform/loguniform [low, high], randint [low, high)."""

    model_config = _STRICT
    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

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

    def to_tune(self):
        from ray import tune

        kind, value = self.kind, getattr(self, self.kind)
        return {
            "grid": lambda: tune.grid_search(list(value)),
            "choice": lambda: tune.choice(list(value)),
            "uniform": lambda: tune.uniform(*value),
            "loguniform": lambda: tune.loguniform(*value),
            "randint": lambda: tune.randint(*value),
        }[kind]()


class TrialResources(BaseModel):
    model_config = _STRICT
    num_workers: int = Field(1, gt=0, description="Ray Train workers per trial")
    cpus_per_worker: float = Field(1.0, gt=0)
    use_gpu: Literal["auto"] | bool = "auto"


class SchedulerSpec(BaseModel):
    model_config = _STRICT
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, gt=0, description="epochs before a trial may be stopped")
    reduction_factor: float = Field(2.0, gt=1)
    max_t: int | None = Field(None, gt=0, description="default: the base experiment's optim.epochs")


class ReportSpec(BaseModel):
    model_config = _STRICT
    rows: list[str] | None = Field(None, description="config keys that make a row (default: the space keys)")
    title: str | None = None


class SweepSpec(BaseModel):
    model_config = _STRICT
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$")
    base: str
    overrides: dict[str, Any] = {}
    space: dict[str, SearchDim] = Field(..., min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    num_samples: int = Field(1, gt=0, description="samples of the random dimensions (grids are crossed)")
    metric: str = "val_top1"
    mode: Literal["max", "min"] = "max"
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


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepSpec, ExperimentConfig]:
    """Read a sweep YAML and its base experiment; every key is checked before Ray starts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path.name}: invalid YAML ({getattr(e, 'problem', e)})") from None
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            import difflib

            close = difflib.get_close_matches(str(err["loc"][-1]), _fields_at(err["loc"][:-1]), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path.name}: unknown key '{loc}'{hint}") from None
        raise ConfigError(f"{path.name}: {loc}: {err['msg'].removeprefix('Value error, ')}") from None
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
            set_dotted(base.to_dict(), key, None)
        except ConfigError as e:
            raise ConfigError(f"{path.name}: space: {e}") from None
    return spec, base


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `SchedulerSpec | None`."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _fields_at(loc: tuple) -> list[str]:
    """Valid key names at an error location (for 'did you mean')."""
    if tuple(loc[:1]) == ("space",):
        return list(SearchDim.model_fields)
    schema: type[BaseModel] | None = SweepSpec
    for part in loc:
        field = schema.model_fields.get(str(part)) if schema else None
        schema = _model_of(field.annotation) if field else None
    return list(schema.model_fields) if schema else []
