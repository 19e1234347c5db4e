"""What a sweep shows on the terminal: one line per trial event, Ray's own chatter in a log file.

Tune's status tables, Ray Train's per-report `TrainingReport(...)` lines, Ray Data's execution
banners and Ray's deprecation and worker-start warnings are written for Ray's developers; around a
sweep they bury the answer. `quiet_ray_output` sends them to `<sweep dir>/ray.log` (its path is
printed); `SweepProgress` prints what a user follows instead:

    [3/12 done, 1 running, 1 failed, ETA 0:02:10] tiny-00006 design=parallel seed=1: epoch 1/2 train_loss 1.213
    [4/12 done, 0 running, 2 failed, ETA 0:01:55] tiny-00007 failed: model.focal_levels needs one entry per stage ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path

from ray import tune

from vfn.training.progress import format_eta

from .report import row_name

RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "py.warnings")


class SweepProgress(tune.Callback):
    """One line per trial result, stop, failure and end, with counts and an ETA for the sweep."""

    def __init__(self, total: int, epochs: int, metric: str, row_keys: list[str], stream=None):
        self.total, self.epochs, self.metric, self.row_keys = total, epochs, metric, row_keys
        self.stream = stream  # None: sys.stdout at the time of printing
        self.t0 = time.monotonic()
        self.epochs_done = 0
        self.running: set[str] = set()
        self.finished: set[str] = set()
        self.failed: set[str] = set()

    def __getstate__(self):  # Tune pickles its callbacks with the experiment (a resumed sweep unpickles them)
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.t0, self.epochs_done = time.monotonic(), 0  # a resumed sweep's clock starts again

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs_done += 1
        value = result.get(self.metric)
        shown = f" {self.metric} {value:.4g}" if isinstance(value, (int, float)) else ""
        self._print(f"{self._name(trial)}: epoch {result.get('epoch', '?')}/{self.epochs}{shown}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed.add(trial.trial_id)
        self._end(trial, f"failed: {error_of(trial)}")

    def _end(self, trial, what: str) -> None:
        self.running.discard(trial.trial_id)
        self.finished.add(trial.trial_id)
        epoch = (trial.last_result or {}).get("epoch")
        if what == "finished" and epoch is not None and epoch < self.epochs:
            what = f"stopped by the scheduler after epoch {epoch}"
        self._print(f"{self._name(trial)} {what}")

    def _name(self, trial) -> str:
        setting = row_name((trial.config or {}).get("params", {}), self.row_keys)
        return f"trial {trial.trial_id} {setting} seed={(trial.config or {}).get('seed')}".rstrip()

    def _print(self, text: str) -> None:
        done = len(self.finished)
        status = f"[{done}/{self.total} done, {len(self.running)} running, {len(self.failed)} failed"
        eta = self.eta_s()
        status += f", ETA {format_eta(eta)}]" if eta is not None else "]"
        print(f"{status} {text}", file=self.stream or sys.stdout, flush=True)

    def eta_s(self) -> float | None:
        """Remaining trial-epochs at the mean rate so far (stopped and failed trials count as done)."""
        if not self.epochs_done:
            return None
        per_epoch = (time.monotonic() - self.t0) / self.epochs_done
        left = (self.total - len(self.finished)) * self.epochs
        return per_epoch * left


def error_of(trial) -> str:
    """A failed trial's reason, from the error file Tune has just written in its local directory."""
    path = Path(trial.error_file) if trial.error_file else None
    if path is None or not path.is_file():
        return "see the trial's error.txt"
    return trial_error_line(path.read_text())


def trial_error_line(error: BaseException | str) -> str:
    """The line of a trial's error that says what went wrong (Tune wraps the trial's exception in
    its own, with tracebacks): the last line that names an error, else the last line."""
    text = str(error).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if "Error:" in ln] or lines or [type(error).__name__]
    return re.sub(r"^[\w.]+\.(\w+:)", r"\1", named[-1])[:300]  # vfn.config.schema.ConfigError: -> ConfigError:


@contextlib.contextmanager
def quiet_ray_output(log_path: Path | None, verbose: bool):
    """Ray's driver-side log records, the raylet's warnings, Tune's own progress output and Python
    warnings go to `log_path` (nothing changes when `verbose` or no path); restored afterwards."""
    if verbose or log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as sink, _raylet_messages_to(sink), _legacy_tune_output():
        with _ray_logs_to(log_path):
            yield


@contextlib.contextmanager
def _raylet_messages_to(sink):
    """The raylet's warnings pushed to the driver ("N PYTHON worker processes have been started
    ...") are printed by `ray._private.worker.print_to_stdstream` from a driver thread whatever
    `log_to_driver` says; Ray has no setting for it, so the function is swapped while we run."""
    import ray._private.worker as ray_worker  # LAZY: Ray's internals, only to quiet its output

    printer = ray_worker.print_to_stdstream

    def to_log(data, ignore_prefix: bool = False):
        sink.writelines(f"({data.get('pid', 'ray')}) {line}\n" for line in data.get("lines", []))
        sink.flush()

    ray_worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = printer


@contextlib.contextmanager
def _legacy_tune_output():
    """Tune's newer console output prints its configuration table, result paths and error files even
    at verbose=0; its legacy reporter at verbose=0 prints nothing (`RAY_AIR_NEW_OUTPUT=0`)."""
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved


@contextlib.contextmanager
def _ray_logs_to(log_path: Path):
    """Ray's loggers and Python warnings into the log file instead of the console."""
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.propagate)
        logger.handlers = [h for h in logger.handlers if not _is_console(h)] + [handler]
        logger.propagate = False
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
        handler.close()


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
