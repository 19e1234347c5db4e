"""Experiment files: YAML with `extends:` chains, `key=value` overrides, paths made absolute.

    cfg = load_config("experiments/k400_tiny.yaml", ["optim.lr=0.05", "scaling.num_workers=4"])

A YAML error names its file and line; every other mistake is one `ConfigError` line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vfn.errors import ConfigError

from .keys import parse_overrides, set_dotted
from .schema import ExperimentConfig, config_from_dict

PATH_KEYS = ("data.train", "data.val", "data.labels", "model.pretrained", "model.finetune_from", "output.root")


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path, what: str = "experiment", _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping with its `extends:` chain merged in (paths relative to the extending file)."""
    path = Path(path).resolve()
    if path in _chain:
        raise ConfigError(f"{path.name}: `extends` cycle: {' -> '.join(p.name for p in (*_chain, path))}")
    if not path.is_file():
        where = f" (extended by {_chain[-1].name})" if _chain else ""
        raise ConfigError(f"{path}: no such {what} file{where}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path.name}:{line} invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: top level must be a mapping, got {type(raw).__name__}")
    parents = raw.pop("extends", None) or []
    for parent in [parents] if isinstance(parents, str) else parents:
        raw = deep_merge(read_yaml(path.parent / parent, what, (*_chain, path)), raw)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Experiment YAML (+ `extends:` chain) + `key=value` overrides -> validated config.

    Relative data/weight paths are made absolute against the current directory, so Ray workers
    (whose working directory differs) see the same files. `output.name` defaults to the file stem.
    """
    raw = read_yaml(path) if path else {}
    for key, value in parse_overrides(overrides or []):
        set_dotted(ExperimentConfig, raw, key, value)
    if path and not (raw.get("output") or {}).get("name"):
        raw.setdefault("output", {})["name"] = Path(path).stem
    cfg = config_from_dict(raw, Path(path).name if path else "config")
    return absolutize(cfg)


def absolutize(cfg: ExperimentConfig, base: str | Path | None = None) -> ExperimentConfig:
    """The config with relative paths (`PATH_KEYS`) made absolute against `base` (default: cwd)."""
    base = Path(base or Path.cwd())
    flat, updates = cfg.flat(), {}
    for key in PATH_KEYS:
        value = flat.get(key)
        if value and "://" not in value and not Path(value).is_absolute():
            updates[key] = str((base / value).resolve())
    return cfg.with_overrides(updates) if updates else cfg


def diff(a: ExperimentConfig, b: ExperimentConfig, sections: tuple[str, ...],
         ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys (within `sections`, except `ignore`) whose values differ, as 'key: old -> new'."""
    fa, fb = a.flat(), b.flat()
    keys = sorted(k for k in set(fa) | set(fb) if k.split(".")[0] in sections and k not in ignore)
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in keys if fa.get(k) != fb.get(k)]
