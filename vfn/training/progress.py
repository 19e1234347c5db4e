"""A live progress line on the driver while Ray Train workers run.

Rank 0 pushes small dicts (`ProgressPoster`) to a zero-CPU actor (fire and forget); a driver thread polls it and
redraws one line: `epoch 3/20 [412/1250] loss 2.314 lr 0.0125 87.1 clips/s data 12% ETA 0:14:05`.
On a terminal the line is redrawn in place; otherwise a line is printed per epoch and every 30 s.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

import ray

from vfn.config.schema import ExperimentConfig

if TYPE_CHECKING:  # torch: `format_eta` serves Tune's trial actors too, which stay torch-free
    from .step import Plan, TrainStep


@ray.remote(num_cpus=0)
class ProgressBoard:
    def __init__(self):
        self._state: dict = {}

    def update(self, state: dict) -> None:
        self._state = state

    def get(self) -> dict:
        return self._state


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_line(s: dict) -> str:
    if not s:
        return "starting workers ..."
    if s.get("phase") == "eval":
        return f"epoch {s['epoch']}/{s['epochs']} validating [{s.get('videos', 0)} videos]"
    line = (
        f"epoch {s['epoch']}/{s['epochs']} [{s['step']}/{s['steps']}] loss {s['loss']:.3f} "
        f"lr {s['lr']:.3g} {s['clips_per_s']:.1f} clips/s data {100 * s['data_wait']:.0f}%"
    )
    if s.get("eta_s") is not None:
        line += f" ETA {format_eta(s['eta_s'])}"
    if s.get("val_top1") is not None:
        line += f" | val top-1 {100 * s['val_top1']:.1f}%"
    return line


class ProgressPrinter:
    """Driver side: polls the board in a thread while `trainer.fit()` blocks."""

    def __init__(self, board, stream=None, interval_s: float = 1.0, plain_every_s: float = 30.0, note=None):
        self.board, self.stream, self.note = board, stream or sys.stdout, note
        self.interval_s, self.plain_every_s = interval_s, plain_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="vfn-progress")
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _loop(self):
        last_epoch, last_plain, last_line = None, 0.0, ""
        while not self._stop.wait(self.interval_s):
            try:
                state = ray.get(self.board.get.remote(), timeout=5)
            except Exception:  # the board is best effort: never break training over a progress line
                continue
            line = format_line(state)
            if self.note is not None and (extra := self.note()):
                line += f" | {extra}"
            if self._tty:
                self.stream.write("\r\033[K" + line)
                self.stream.flush()
                continue
            now = time.monotonic()
            epoch_done = state.get("epoch_done")
            new_epoch = epoch_done is not None and epoch_done != last_epoch
            if new_epoch or (now - last_plain > self.plain_every_s and line != last_line):
                print(line, file=self.stream, flush=True)
                last_epoch, last_plain, last_line = epoch_done, now, line


class ProgressPoster:
    """Rank 0's posts to the driver's progress line (at most two a second); a no-op elsewhere."""

    def __init__(self, board, cfg: ExperimentConfig, plan: Plan, start_step: int):
        self.board, self.cfg, self.plan = board, cfg, plan
        self.world = ray.train.get_context().get_world_size()
        self.t0, self.start_step, self.last = time.perf_counter(), start_step, 0.0

    def post(self, state: dict) -> None:
        if self.board is not None:
            self.board.update.remote(state)

    def eta_s(self, global_step: int) -> float:
        done = max(global_step - self.start_step, 1)
        return (time.perf_counter() - self.t0) / done * (self.plan.total_steps - global_step)

    def step(self, step: TrainStep, epoch: int, loss: float, clips_per_s: float, data_wait: float,
             last_val: dict | None) -> None:
        now = time.perf_counter()
        if self.board is None or now - self.last <= 0.5:
            return
        self.last = now
        self.post(dict(epoch=epoch + 1, epochs=self.cfg.optim.epochs,
                       step=step.global_step - epoch * self.plan.steps_per_epoch, steps=self.plan.steps_per_epoch,
                       loss=loss, lr=step.lr, clips_per_s=clips_per_s, data_wait=data_wait,
                       eta_s=self.eta_s(step.global_step), val_top1=(last_val or {}).get("val_top1")))

    def epoch_done(self, m: dict, epoch: int, score: float | None) -> None:
        self.post(dict(epoch=epoch + 1, epochs=self.cfg.optim.epochs, step=self.plan.steps_per_epoch,
                       steps=self.plan.steps_per_epoch, loss=m["train_loss"], lr=m["lr"],
                       clips_per_s=m["clips_per_s"], data_wait=m["data_wait_share"],
                       eta_s=self.eta_s(m["global_step"]), val_top1=score,
                       epoch_done=epoch + 1))
