"""Video-FocalNets: the model and a Ray/MLflow experiment platform around it.

One package per concern; each outside system has one owner:

  model       the networks (pure PyTorch + timm; never imports ray or mlflow)
  config      the one validated experiment schema, its YAML files, overrides and sweep specs
  data        manifests, Parquet shards, decoding (decord) and the Ray Data pipeline
  training    one training step for every caller, the Ray Train worker and driver, checkpoints
  evaluation  multi-view evaluation: metrics, the Ray worker and the driver
  tuning      Ray Tune sweeps and ablations: trials, schedulers, reports
  tracking    everything that talks to MLflow: runs, figures, registered models, comparisons
  runtime     starting Ray (a local instance unless given an address) and storage locations
  commands    the `vfn` subcommands; `vfn.cli` routes to them
"""

import importlib.metadata


def installed_version() -> str:
    """The installed distribution's version (pyproject.toml is its one source); `0+unknown` in a
    source tree that was never installed (e.g. on `PYTHONPATH` only)."""
    try:
        return importlib.metadata.version("video-focalnets")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = installed_version()
