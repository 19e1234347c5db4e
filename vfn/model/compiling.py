"""torch.compile for training and evaluation: compiled ahead of the first batch, timed once, eager on failure.

Compilation happens on the first call, so a run that compiled lazily would count minutes of
compilation as slow training steps and would only find out mid-epoch that its backend fails.
`compile_ahead` compiles a module and runs it once on a batch of the shape it will see (the
caller's `warm_up`), so the compile time is measured apart from throughput, and a failure costs
one warning and eager execution instead of a crashed run.

The compiled object is a wrapper (`torch.compile(module)`); callers keep the eager module for
state dicts, EMA and checkpoints, so saved keys never carry compile's `_orig_mod.` prefix and a
compiled run's checkpoint loads into an eager model as it is.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from vfn.config.names import COMPILE_MODES
from vfn.errors import first_line


@dataclass(frozen=True)
class Compiled:
    """What `compile_ahead` gives back: the module to call and what compiling it cost."""

    module: nn.Module  # the compiled wrapper, or the eager module when compilation failed
    seconds: float  # compilation + the warm-up call(s)
    error: str | None = None  # the failure's first line, when it ran eagerly

    @property
    def compiled(self) -> bool:
        return self.error is None


def compile_ahead(module: nn.Module, warm_up: Callable[[nn.Module], None], mode: str = "default") -> Compiled:
    """`torch.compile(module, mode=mode)`, then `warm_up(compiled)` (which should run the batch
    shapes, autocast and train/eval mode the caller will use) to compile now. Any error during
    compilation: one warning, and the eager `module` comes back."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(module, mode=mode)
        warm_up(compiled)
        synchronize(module)
    except Exception as e:  # noqa: BLE001 - any backend failure means: run eagerly
        warnings.warn(f"torch.compile failed, running eagerly: {first_line(e)}", RuntimeWarning, stacklevel=2)
        return Compiled(module, time.perf_counter() - t0, first_line(e))
    return Compiled(compiled, time.perf_counter() - t0)


def synchronize(module: nn.Module) -> None:
    """Wait for the module's accelerator, so a timer around its calls measures the work."""
    param = next(module.parameters(), None)
    if param is not None and param.device.type == "cuda":
        torch.cuda.synchronize(param.device)
