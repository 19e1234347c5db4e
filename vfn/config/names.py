"""The named choices a config may make, in one torch-free place: the schema validates against them
and `vfn.model` builds from them. A new design variant is one name in `DESIGNS` plus its modulation
class registered under that name in `vfn.model.modulation` (`tests/model/test_designs.py` shows it)."""

from __future__ import annotations

MODELS: tuple[str, ...] = ("videofocalnet_tiny", "videofocalnet_small", "videofocalnet_base")
DESIGNS: tuple[str, ...] = ("parallel", "sequential", "spatial", "joint", "factorized")
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SCHEDULERS: tuple[str, ...] = ("asha", "fifo")  # sweep trial schedulers, built by vfn.tuning.schedulers
