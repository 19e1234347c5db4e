"""The Ray Train worker of `vfn train`: restore, then per epoch train, validate, report and save.

It reads like Ray's own examples; the training step itself is `step.TrainStep` (no Ray inside),
the multi-view validation is `vfn.evaluation.metrics.evaluate_batches`. Rank 0 logs to MLflow and posts the
progress line; every rank reports to Ray Train, which keeps the checkpoints.

MLflow receives only measured values: validation metrics at the epochs that validated. The
`-1.0` before the first validation exists only in Ray Train's reports, whose checkpoint ranking
needs a number in every report.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import ray.train
import ray.train.torch
import torch

from vfn.config.schema import ExperimentConfig
from vfn.data.device_augment import DeviceAugment
from vfn.data.pipeline import TooManyCorruptVideos, check_corrupt_budget
from vfn.evaluation.metrics import EvalAccumulator, EvalResult, EvaluationCountError, evaluate_batches
from vfn.runtime import storage
from vfn.tracking.runs import MetricLogger, log_confusion

from .build import eval_batch_clips
from .checkpoints import load_state, save_state
from .progress import ProgressPoster
from .step import EpochCounters, Plan, TrainStep

NO_SCORE = -1.0  # Ray's checkpoint ranking key before the first validation (never logged to MLflow)
STOP_FILE = "stopped.txt"  # in the run directory: why the workers stopped the run, for the driver


@dataclass(frozen=True)
class WorkerSetup:
    """What the driver hands every worker, as Ray's `train_loop_config` (`to_ray`), read back once."""

    cfg: ExperimentConfig
    plan: Plan
    run_dir: str
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    label_names: list[str] | None = None
    progress: Any = None  # the driver's ProgressBoard actor: rank 0 posts the live line to it
    rank: int = 0

    def to_ray(self) -> dict[str, Any]:
        return dict(cfg=self.cfg.to_dict(), plan=asdict(self.plan), run_dir=self.run_dir,
                    tracking_uri=self.tracking_uri, mlflow_run_id=self.mlflow_run_id,
                    label_names=self.label_names, progress=self.progress)

    @classmethod
    def from_ray(cls, config: dict[str, Any], rank: int) -> WorkerSetup:
        return cls(**{**config, "cfg": ExperimentConfig.model_validate(config["cfg"]),
                      "plan": Plan(**config["plan"]), "rank": rank})


@dataclass
class RunState:
    """What survives a restart besides the step's own state."""

    epoch: int = 0
    restarts: int = 0
    best: float | None = None
    last_val: dict[str, float] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochEnd:
    """One epoch's outcome: its metrics, the validation result (if it validated), a fatal error."""

    metrics: dict[str, Any]
    result: EvalResult | None = None
    error: str | None = None
    is_best: bool = False


def train_loop_per_worker(config: dict) -> None:
    """One Ray Train worker: plain PyTorch, with Ray's process group, shards, checkpoint and report."""
    setup = WorkerSetup.from_ray(config, ray.train.get_context().get_world_rank())
    cfg, plan, rank = setup.cfg, setup.plan, setup.rank
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # applied to the batches that carry aug_params: the driver decides (`augment.on_device`)
    step = TrainStep(cfg, plan, device, wrap=ray.train.torch.prepare_model, augment=DeviceAugment(cfg.data.input_size))
    run = restore(step)
    if run.epoch >= cfg.optim.epochs:  # a re-run of a finished run: report, do nothing
        ray.train.report(run.metrics)
        return
    logger = MetricLogger(setup.tracking_uri if rank == 0 else None, setup.mlflow_run_id)
    progress = ProgressPoster(setup.progress if rank == 0 else None, cfg, plan, step.global_step)
    if step.compile_s is not None:  # measured once, before the first epoch: not in any clips/s
        logger.log({"compile_s": step.compile_s}, step=step.global_step)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if plan.val_videos else None
    for epoch in range(run.epoch, cfg.optim.epochs):
        counters = train_epoch(step, train_shard, cfg, epoch, logger, progress, run)
        end = finish_epoch(step, counters, val_shard, cfg, epoch, progress, run)
        run.epoch, run.metrics = epoch + 1, end.metrics
        if rank == 0:
            log_epoch(logger, end, setup, epoch)
        if end.error:
            stop_run(end, setup)
            return
        progress.epoch_done(end.metrics, epoch, (run.last_val or {}).get(cfg.output.metric))
        save_and_report(step, run, end, setup)
        maybe_kill_worker(setup, epoch)
    logger.flush()


def restore(step: TrainStep) -> RunState:
    """Continue from Ray Train's latest checkpoint, if this run has one."""
    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return RunState()
    with checkpoint.as_directory() as d:
        state = load_state(d)
    step.load_state_dict(state)
    return RunState(epoch=state["epoch"], restarts=state["restarts"] + 1, best=state.get("best"),
                    last_val=state.get("last_val"), metrics=state.get("metrics", {}))


def train_epoch(step: TrainStep, shard, cfg: ExperimentConfig, epoch: int, logger: MetricLogger,
                progress: ProgressPoster, run: RunState) -> EpochCounters:
    """One pass over this worker's shard; returns its own (not yet all-reduced) counters."""
    counters, plan = EpochCounters(), step.plan
    batches = iter(shard.iter_torch_batches(batch_size=cfg.optim.batch_size, drop_last=True, prefetch_batches=2))
    t0 = time.perf_counter()
    step.model.train()  # once per epoch, not per micro-batch
    step.optimizer.zero_grad(set_to_none=True)
    i = 0
    while True:
        t_wait = time.perf_counter()
        batch = next(batches, None)
        counters.data_wait_s += time.perf_counter() - t_wait
        if batch is None:
            break
        out = step(batch["video"], batch["label"], batch["valid"], i, batch.get("aug_params"))
        counters.add(out)
        i += 1
        if out.stepped:
            clips_per_s = i * cfg.optim.batch_size * progress.world / (time.perf_counter() - t0)
            if step.global_step % cfg.tracking.log_every_steps == 0 or i == plan.micro_steps_per_epoch:
                logger.log({"train/loss": out.loss, "train/lr": step.lr, "train/clips_per_s": clips_per_s},
                           step=step.global_step)
            progress.step(step, epoch, out.loss, clips_per_s, counters.data_wait_s / (time.perf_counter() - t0),
                          run.last_val)
    counters.wall_s = time.perf_counter() - t0
    if i != plan.micro_steps_per_epoch:
        raise RuntimeError(f"epoch {epoch + 1}: a worker got {i} batches, planned {plan.micro_steps_per_epoch}")
    return counters


def finish_epoch(step: TrainStep, counters: EpochCounters, val_shard, cfg: ExperimentConfig, epoch: int,
                 progress: ProgressPoster, run: RunState) -> EpochEnd:
    """All-reduce the counters, check the corrupt budget, validate when due, rank the checkpoint."""
    c, plan = counters.all_reduce(step.device), step.plan
    world = progress.world
    metrics: dict[str, Any] = {
        "epoch": epoch + 1, "global_step": step.global_step, "restarts": run.restarts, "lr": step.lr,
        "train_loss": c.loss_sum / max(c.scored, 1), "train_top1": c.correct / max(c.scored, 1),
        "train_corrupt": int(c.corrupt), "data_wait_share": c.data_wait_s / max(c.wall_s, 1e-9),
        "clips_per_s": plan.micro_steps_per_epoch * cfg.optim.batch_size * world / max(c.wall_s / world, 1e-9),
        "epoch_time_s": c.wall_s / world,
    }
    end = EpochEnd(metrics)
    try:
        check_corrupt_budget(int(c.corrupt), int(c.corrupt + c.scored), cfg.data.max_corrupt_share)
    except TooManyCorruptVideos as e:
        end.error = f"training data: {e}"
        return end
    due = (epoch + 1) % cfg.eval.every_epochs == 0 or epoch + 1 == cfg.optim.epochs
    if val_shard is not None and due:
        progress.post(dict(phase="eval", epoch=epoch + 1, epochs=cfg.optim.epochs, videos=plan.val_videos))
        try:
            end.result = run_validation(step, val_shard, cfg, metrics)
        except (EvaluationCountError, TooManyCorruptVideos) as e:
            end.error = f"validation: {e}"
            return end
        run.last_val = {k: v for k, v in metrics.items() if k.startswith("val_")}
    # Ray's reports carry the last validation forward (sweep schedulers compare every report)
    metrics.update({k: v for k, v in (run.last_val or {}).items() if k not in metrics})
    score = (run.last_val or {}).get(cfg.output.metric)
    end.is_best = end.result is not None and score is not None and (run.best is None or score > run.best)
    if end.is_best:
        run.best = score
    metrics["best_" + cfg.output.metric] = run.best if run.best is not None else NO_SCORE
    metrics[cfg.output.metric] = score if score is not None else NO_SCORE  # Ray's checkpoint ranking key
    return end


def run_validation(step: TrainStep, val_shard, cfg: ExperimentConfig, metrics: dict) -> EvalResult:
    """Every validation video once, with the trained weights and (when kept) the EMA weights."""
    result, plan = None, step.plan
    pad_to = eval_batch_clips(cfg) if step.compile_s is not None else None  # compiled nets keep one shape
    for prefix, net in step.eval_nets.items():
        if net is None:
            continue
        acc = EvalAccumulator(cfg.data.num_classes, plan.val_videos, step.device)
        evaluate_batches(net, val_shard.iter_torch_batches(batch_size=cfg.eval.batch_size), acc, step.device,
                         step.autocast, pad_to=pad_to)
        acc.all_reduce()
        res = acc.result()
        metrics.update(res.metrics(prefix))
        result = result or res
    check_corrupt_budget(result.corrupt, result.corrupt + result.videos, cfg.data.max_corrupt_share)
    return result


def log_epoch(logger: MetricLogger, end: EpochEnd, setup: WorkerSetup, epoch: int) -> None:
    """Rank 0: the epoch's measured metrics to MLflow, and the confusion matrix when it validated."""
    # without validation this epoch, no val_* value was measured (Ray's reports carry the last one);
    # the epoch and step counts are the charts' x-axes and the best value is MLflow's own max: as
    # charts of their own they only crowd the run's page
    validated = end.result is not None
    logger.log({"epoch/" + k: v for k, v in end.metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and (validated or "val_" not in k)
                and k not in ("epoch", "global_step") and not k.startswith("best_")},
               step=epoch + 1)
    logger.flush()
    cfg, uri, run_id = setup.cfg, setup.tracking_uri, setup.mlflow_run_id
    if end.result is None or not (uri and run_id):
        return
    title = f"{cfg.output.name} epoch {epoch + 1}: top-1 {100 * end.result.top1:.1f}%"
    log_confusion(uri, run_id, end.result.confusion, setup.label_names, title, "confusion_matrix.png",
                  *(("best/confusion_matrix.png",) if end.is_best else ()))


def save_and_report(step: TrainStep, run: RunState, end: EpochEnd, setup: WorkerSetup) -> None:
    """Report the epoch to Ray Train, with a checkpoint when periodic or best (written by rank 0)."""
    epoch, cfg = run.epoch, setup.cfg
    if not (epoch % cfg.output.checkpoint_every == 0 or epoch == cfg.optim.epochs or end.is_best):
        ray.train.report(end.metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if setup.rank == 0:
            save_state(d, {**step.state_dict(), "epoch": epoch, "restarts": run.restarts, "best": run.best,
                           "last_val": run.last_val, "metrics": end.metrics,
                           "confusion": torch.from_numpy(end.result.confusion) if end.result is not None else None,
                           "config": cfg.to_dict(), "mlflow_run_id": setup.mlflow_run_id})
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report(end.metrics, checkpoint=checkpoint)


def stop_run(end: EpochEnd, setup: WorkerSetup) -> None:
    """End the run on purpose (too many corrupt videos, a counting error): rank 0 leaves the reason
    for the driver to raise in one line. Not an exception: Ray Train would retry the worker group
    (`scaling.max_failures`) and hand the driver a traceback; and not only a report, whose metrics
    Ray Train V2 keeps only when a checkpoint comes with them."""
    if setup.rank == 0:
        storage.write_text(storage.join(setup.run_dir, STOP_FILE), end.error)
    ray.train.report({**end.metrics, "error": end.error})


def maybe_kill_worker(setup: WorkerSetup, epoch: int) -> None:
    """Fault injection (`debug.kill_worker_after_epoch`): hard-exit one worker, once per run."""
    k, rank = setup.cfg.debug.kill_worker_after_epoch, setup.rank
    if k != epoch + 1 or rank != setup.cfg.debug.kill_rank:
        return
    marker = storage.join(setup.run_dir, f".killed_after_epoch_{k}")
    if storage.exists(marker):  # the restarted worker must carry on
        return
    storage.write_text(marker, "")
    # wait until the controller has registered this epoch's checkpoint (it polls every 2 s), while
    # the other workers already block in epoch k + 1; then die hard
    time.sleep(6)
    print(f"debug: killing worker {rank} after epoch {k}", flush=True)
    os._exit(1)
