"""Distributed training with Ray Train: `run_training(cfg)` on the driver, `train_loop_per_worker`
on each worker (plain PyTorch: DDP, AMP, accumulation, clipping, EMA, warm-up + cosine).

Resume is automatic: a run is a directory `<output.root>/runs/<output.name>`; Ray Train restores
its checkpoint manager from there, so the same command after a crash (or a restarted worker group
under `FailureConfig`) continues from the latest checkpoint, in the same MLflow run, and ends with
the same number of optimiser steps as an uninterrupted run (steps per epoch are fixed up front).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from . import storage
from .config import ConfigError, ExperimentConfig, diff, validate

# sections that must match for a re-run to continue an existing run
RESUME_SECTIONS = ("seed", "model", "data", "augment", "optim", "eval", "scaling")
CONFIG_FILE = "config.yaml"


class TrainingError(RuntimeError):
    """The run failed (after the configured retries); one line, with where to look."""


@dataclass
class Plan:
    """Fixed before Ray starts, so every attempt of a run agrees on the schedule."""

    train_videos: int
    val_videos: int
    micro_steps_per_epoch: int  # batches per worker per epoch (equal shards, drop_last)
    steps_per_epoch: int  # optimiser steps per epoch
    total_steps: int
    warmup_steps: int
    lr: float


@dataclass
class TrainResult:
    name: str
    run_dir: str  # a local path or a URI (s3://...): see `storage`
    metrics: dict[str, Any]
    best_checkpoint: str | None  # Ray checkpoint directories, same kind of location
    latest_checkpoint: str | None
    mlflow_run_id: str | None
    tracking_uri: str | None
    wall_s: float


# -- shared builders (also used by eval / predict) ---------------------------------------------


def build_model(cfg: ExperimentConfig, *, load_pretrained: bool = True) -> torch.nn.Module:
    import vfn.model as vm

    m = cfg.model
    model = vm.create_model(
        m.name,
        num_classes=cfg.data.num_classes,
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.input_size,
        drop_path_rate=m.drop_path_rate,
        tubelet_size=m.tubelet_size,
        focal_levels=list(m.focal_levels),
        focal_windows=list(m.focal_windows),
        design=m.design,
        grad_checkpointing=m.grad_checkpointing,
        embed_dim=m.embed_dim,
        depths=m.depths,
    )
    if m.init == "xavier":
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
    if load_pretrained and m.pretrained:
        vm.load_image_weights(model, m.pretrained)
    return model


def build_optimizer(cfg: ExperimentConfig, model: torch.nn.Module, plan: Plan):
    """timm optimiser (no weight decay on norms and biases) and per-step warm-up + cosine schedule;
    call `scheduler.step_update(global_step)` after every optimiser step."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    o = cfg.optim
    opt_kwargs = dict(momentum=o.momentum) if o.optimizer == "sgd" else dict(betas=tuple(o.betas))
    optimizer = create_optimizer_v2(model, opt=o.optimizer, lr=plan.lr, weight_decay=o.weight_decay, **opt_kwargs)
    scheduler = CosineLRScheduler(optimizer, t_initial=plan.total_steps, lr_min=o.min_lr, warmup_t=plan.warmup_steps,
                                  warmup_lr_init=o.warmup_lr, t_in_epochs=False)
    return optimizer, scheduler


def clip_spec(cfg: ExperimentConfig, split: str):
    from .data.clips import ClipSpec

    d = cfg.data
    views = dict(num_clips=cfg.eval.num_clips, num_crops=cfg.eval.num_crops) if split == "val" else {}
    return ClipSpec(num_frames=d.num_frames, frame_interval=d.frame_interval, sampling=d.sampling,
                    input_size=d.input_size, **views)


def augment_spec(cfg: ExperimentConfig):
    from .data.clips import AugmentSpec

    a = cfg.augment
    return AugmentSpec(flip_prob=a.flip_prob, color_jitter=a.color_jitter, hue=a.hue,
                       color_jitter_prob=a.color_jitter_prob, grayscale_prob=a.grayscale_prob,
                       scale=tuple(a.scale), ratio=tuple(a.ratio))


def build_datasets(cfg: ExperimentConfig, splits=("train", "val")) -> dict:
    from .data.pipeline import build_dataset

    d = cfg.data
    common = dict(num_cpus=d.decode_cpus, decode_batch_size=d.decode_batch_size)
    out = {}
    if "train" in splits and d.train:
        out["train"] = build_dataset(d.train, "train", clip_spec(cfg, "train"), augment_spec(cfg),
                                     seed=cfg.seed, shuffle=d.shuffle, **common)
    if "val" in splits and d.val:
        out["val"] = build_dataset(d.val, "val", clip_spec(cfg, "val"), None, **common)
    return out


def resolve_precision(cfg: ExperimentConfig, device: torch.device) -> str:
    p = cfg.optim.precision
    if device.type != "cuda":
        if p in ("bf16", "fp16"):
            raise ConfigError(f"optim.precision={p} needs a GPU; this worker runs on {device.type} (use auto or fp32)")
        return "fp32"
    if p == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return p


def autocast_for(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def make_plan(cfg: ExperimentConfig) -> Plan:
    """Count videos and fix the schedule; impossible combinations fail here, before Ray starts."""
    from .data.shards import count_videos, list_shards

    def count(key: str, where: str | None) -> int:
        if not where:
            return 0
        try:
            list_shards(where)
            return count_videos(where)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"data.{key}: cannot read shards at {where} ({first})") from None

    if not cfg.data.train:
        raise ConfigError("data.train: no training shards given (set data.train=DIR)")
    if cfg.model.pretrained and "://" not in cfg.model.pretrained and not Path(cfg.model.pretrained).is_file():
        raise ConfigError(f"model.pretrained: no such weights file {cfg.model.pretrained} (or set model.pretrained=null)")
    n_train, n_val = count("train", cfg.data.train), count("val", cfg.data.val)
    w, b, accum = cfg.scaling.num_workers, cfg.optim.batch_size, cfg.optim.accum_steps
    micro = (n_train // w) // b
    if micro == 0:
        raise ConfigError(
            f"optim.batch_size: {n_train} training videos give no full batch of {b} per worker "
            f"with scaling.num_workers={w}"
        )
    steps = math.ceil(micro / accum)
    total = steps * cfg.optim.epochs
    return Plan(n_train, n_val, micro, steps, total, int(round(cfg.optim.warmup_epochs * steps)), cfg.scaled_lr)


# -- Ray Train pieces ---------------------------------------------------------------------------


def _split_config():
    from ray.train import DataConfig

    class SplitConfig(DataConfig):
        """Train shards are equal (DDP needs the same step count on every worker); the validation
        split is streamed unevenly so every video is evaluated exactly once (Ray's default
        `equal=True` would drop up to num_workers - 1 of them)."""

        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output = [{} for _ in range(world_size)]
            hints = worker_node_ids if self._enable_shard_locality else None
            for name, ds in datasets.items():
                if ds.name is None:
                    ds.set_name(name)
                ds = ds.copy(ds)
                ds.context.execution_options = self._resolve_execution_options(name)
                for i, split in enumerate(ds.streaming_split(world_size, equal=(name != "val"), locality_hints=hints)):
                    output[i][name] = split
            return output

    return SplitConfig()


def train_loop_per_worker(config: dict) -> None:
    """One Ray Train worker. Reads like a plain PyTorch loop; Ray provides the process group, the
    dataset shards, the checkpoint to resume from, and `report`."""
    import ray.train
    import ray.train.torch
    from timm.loss import SoftTargetCrossEntropy
    from timm.utils import ModelEmaV3

    from .checkpoints import load_state, save_state
    from .data.clips import VideoMixup, normalize
    from .data.pipeline import TooManyCorruptVideos, check_corrupt_budget
    from .evaluate import EvalAccumulator, EvaluationCountError, evaluate_batches
    from .tracking import MetricLogger, log_artifact, plot_confusion

    cfg = ExperimentConfig.model_validate(config["cfg"])
    plan = Plan(**config["plan"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    o = cfg.optim

    torch.manual_seed(cfg.seed)  # same initial weights everywhere (DDP also broadcasts them)
    model = build_model(cfg).to(device)
    ema = ModelEmaV3(model, decay=o.ema_decay) if o.ema else None
    model = ray.train.torch.prepare_model(model)
    bare = model.module if hasattr(model, "module") else model
    optimizer, scheduler = build_optimizer(cfg, bare, plan)
    precision = resolve_precision(cfg, device)
    autocast = autocast_for(precision, device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    mixup = VideoMixup(mixup_alpha=cfg.augment.mixup_alpha, cutmix_alpha=cfg.augment.cutmix_alpha,
                       prob=cfg.augment.mixup_prob, label_smoothing=cfg.augment.label_smoothing,
                       num_classes=cfg.data.num_classes)
    criterion = SoftTargetCrossEntropy()

    start_epoch, global_step, restarts, best, last_val = 0, 0, 0, None, None
    history: dict[str, Any] = {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_state(d)
        bare.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
        start_epoch, global_step = state["epoch"], state["global_step"]
        restarts, best, last_val = state["restarts"] + 1, state.get("best"), state.get("last_val")
        history = state.get("metrics", {})
    if start_epoch >= o.epochs:  # finished already (a re-run of a complete run): report, do nothing
        ray.train.report(history)
        return

    uri, run_id = config.get("tracking_uri"), config.get("mlflow_run_id")
    logger = MetricLogger(uri if rank == 0 else None, run_id)
    board = config.get("progress") if rank == 0 else None
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if plan.val_videos else None
    run_t0, steps_this_run = time.perf_counter(), 0

    def post(state: dict) -> None:
        if board is not None:
            board.update.remote(state)

    for epoch in range(start_epoch, o.epochs):
        model.train()
        sums = torch.zeros(6, dtype=torch.float64)  # loss, correct, scored, corrupt, data wait s, step s
        epoch_t0 = last_post = time.perf_counter()
        batches = iter(train_shard.iter_torch_batches(batch_size=o.batch_size, drop_last=True, prefetch_batches=2))
        optimizer.zero_grad(set_to_none=True)
        i = 0
        while True:
            t_wait = time.perf_counter()
            batch = next(batches, None)
            sums[4] += time.perf_counter() - t_wait
            if batch is None:
                break
            group_start = i - i % o.accum_steps
            group_size = min(o.accum_steps, plan.micro_steps_per_epoch - group_start)
            last_of_group = i + 1 == group_start + group_size
            valid = batch["valid"].to(device).bool()
            x = normalize(batch["video"].to(device, non_blocking=True))
            y = batch["label"].to(device, non_blocking=True)
            sums[3] += float((~valid).sum())
            sync = contextlib.nullcontext() if last_of_group or world == 1 else model.no_sync()
            with sync:
                if valid.any():
                    x, y = (x[valid], y[valid]) if not valid.all() else (x, y)
                    x_mixed, target = mixup(x, y)
                    with autocast():
                        logits = model(x_mixed)
                    loss = criterion(logits.float(), target)
                    sums[0] += loss.item() * len(y)
                    sums[1] += float((logits.argmax(1) == y).sum())
                    sums[2] += len(y)
                else:  # a batch of corrupt videos only: keep DDP in step with a zero-loss pass
                    with autocast():
                        loss = model(x).float().sum() * 0.0
                scaled = loss / group_size
                (scaler.scale(scaled) if scaler else scaled).backward()
            if last_of_group:
                if o.clip_grad:
                    if scaler:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(bare.parameters(), o.clip_grad)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                steps_this_run += 1
                scheduler.step_update(global_step)
                if ema is not None:
                    ema.update(bare, step=global_step)
                now = time.perf_counter()
                clips_per_s = (i + 1) * o.batch_size * world / (now - epoch_t0)
                if global_step % cfg.tracking.log_every_steps == 0 or i + 1 == plan.micro_steps_per_epoch:
                    logger.log({"train/loss": loss.item(), "train/lr": optimizer.param_groups[0]["lr"],
                                "train/clips_per_s": clips_per_s}, step=global_step)
                if now - last_post > 0.5:
                    last_post = now
                    rate = (now - run_t0) / steps_this_run
                    post(dict(epoch=epoch + 1, epochs=o.epochs, step=global_step - epoch * plan.steps_per_epoch,
                              steps=plan.steps_per_epoch, loss=loss.item(), lr=optimizer.param_groups[0]["lr"],
                              clips_per_s=clips_per_s, data_wait=float(sums[4] / (now - epoch_t0)),
                              eta_s=rate * (plan.total_steps - global_step),
                              val_top1=last_val.get("val_top1") if last_val else None))
            i += 1
        sums[5] = time.perf_counter() - epoch_t0
        if i != plan.micro_steps_per_epoch:
            raise RuntimeError(f"epoch {epoch + 1}: worker {rank} got {i} batches, planned {plan.micro_steps_per_epoch}")
        if torch.distributed.is_initialized():
            reduced = sums.to(device)  # gloo / nccl: sum over workers
            torch.distributed.all_reduce(reduced)
            sums = reduced.cpu()
        loss_sum, correct, scored, corrupt, wait_s, step_s = sums.tolist()
        metrics = {
            "epoch": epoch + 1,
            "global_step": global_step,
            "restarts": restarts,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / max(scored, 1),
            "train_top1": correct / max(scored, 1),  # against the un-mixed labels
            "train_corrupt": int(corrupt),
            "data_wait_share": wait_s / max(step_s, 1e-9),
            "clips_per_s": plan.micro_steps_per_epoch * o.batch_size * world / max(step_s / world, 1e-9),
            "epoch_time_s": step_s / world,
        }
        fatal = None
        try:
            check_corrupt_budget(int(corrupt), int(corrupt + scored), cfg.data.max_corrupt_share)
        except TooManyCorruptVideos as e:
            fatal = f"training data: {e}"

        is_eval = val_shard is not None and fatal is None and ((epoch + 1) % cfg.eval.every_epochs == 0 or epoch + 1 == o.epochs)
        result = None
        if is_eval:
            post(dict(phase="eval", epoch=epoch + 1, epochs=o.epochs, videos=plan.val_videos))
            try:
                for name, net in (("val_", bare), ("val_ema_", ema.module if ema is not None else None)):
                    if net is None:
                        continue
                    acc = EvalAccumulator(cfg.data.num_classes, plan.val_videos, device)
                    evaluate_batches(net, val_shard.iter_torch_batches(batch_size=cfg.eval.batch_size), acc, device, autocast)
                    acc.all_reduce()
                    res = acc.result()
                    metrics.update(res.metrics(name))
                    result = result or res
                check_corrupt_budget(result.corrupt, result.corrupt + result.videos, cfg.data.max_corrupt_share)
            except (EvaluationCountError, TooManyCorruptVideos) as e:
                fatal = f"validation: {e}"
            else:
                last_val = {k: v for k, v in metrics.items() if k.startswith("val_")}
        if last_val:
            metrics.update({k: v for k, v in last_val.items() if k not in metrics})
        score = (last_val or {}).get(cfg.output.metric)
        is_best = is_eval and score is not None and (best is None or score > best)
        if is_best:
            best = score
        metrics["best_" + cfg.output.metric] = best if best is not None else -1.0
        metrics[cfg.output.metric] = score if score is not None else -1.0  # checkpoint ranking key
        if fatal:
            metrics["error"] = fatal
            logger.log({"epoch/" + k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=epoch + 1)
            logger.flush()
            ray.train.report(metrics)
            return

        if rank == 0:
            logger.log({"epoch/" + k: v for k, v in metrics.items()}, step=epoch + 1)
            logger.flush()
            if result is not None and run_id and uri:
                with tempfile.TemporaryDirectory() as d:
                    labels = config.get("label_names")
                    png = plot_confusion(result.confusion, labels, Path(d) / "confusion_matrix.png",
                                         f"{cfg.output.name} epoch {epoch + 1}: top-1 {100 * result.top1:.1f}%")
                    log_artifact(uri, run_id, png)
                    if is_best:
                        log_artifact(uri, run_id, png, "best")

        post(dict(epoch=epoch + 1, epochs=o.epochs, step=plan.steps_per_epoch, steps=plan.steps_per_epoch,
                  loss=metrics["train_loss"], lr=metrics["lr"], clips_per_s=metrics["clips_per_s"],
                  data_wait=metrics["data_wait_share"], eta_s=(time.perf_counter() - run_t0) / steps_this_run
                  * (plan.total_steps - global_step), val_top1=score, epoch_done=epoch + 1))

        periodic = (epoch + 1) % cfg.output.checkpoint_every == 0 or epoch + 1 == o.epochs
        if periodic or is_best:
            with tempfile.TemporaryDirectory() as d:
                ckpt = None
                if rank == 0:
                    save_state(d, {
                        "model": bare.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler else None,
                        "ema": ema.module.state_dict() if ema is not None else None,
                        "epoch": epoch + 1,
                        "global_step": global_step,
                        "restarts": restarts,
                        "best": best,
                        "last_val": last_val,
                        "metrics": metrics,
                        "confusion": torch.from_numpy(result.confusion) if result is not None else None,
                        "config": cfg.to_dict(),
                        "mlflow_run_id": run_id,
                    })
                    ckpt = ray.train.Checkpoint.from_directory(d)
                ray.train.report(metrics, checkpoint=ckpt)
        else:
            ray.train.report(metrics)

        k = cfg.debug.kill_worker_after_epoch
        if k == epoch + 1 and rank == cfg.debug.kill_rank:
            marker = storage.join(config["run_dir"], f".killed_after_epoch_{k}")
            if not storage.exists(marker):  # once per run: the restarted worker must carry on
                storage.write_text(marker, "")
                # wait until the controller has registered this epoch's checkpoint (it polls every
                # 2 s), while the other workers already block in epoch k + 1; then die hard
                time.sleep(6)
                print(f"debug: killing worker {rank} after epoch {k}", flush=True)
                os._exit(1)
    logger.flush()


# -- driver -------------------------------------------------------------------------------------


def runs_location(cfg: ExperimentConfig) -> str:
    """`<output.root>/runs`: Ray Train's storage path, one directory per run."""
    return storage.join(storage.absolute(cfg.output.root), "runs")


def prepare_run_dir(cfg: ExperimentConfig) -> str:
    """`<root>/runs/<name>` (a path or a URI), with the resolved config; refuses to continue a run
    configured differently."""
    import yaml

    runs = runs_location(cfg)
    run_dir = storage.join(runs, cfg.output.name)
    saved = storage.join(run_dir, CONFIG_FILE)
    if (text := storage.read_text(saved)) is not None:
        old = validate(yaml.safe_load(text), saved)
        changes = diff(old, cfg, RESUME_SECTIONS)
        if changes:
            more = f" (+{len(changes) - 1} more)" if len(changes) > 1 else ""
            raise ConfigError(
                f"run '{cfg.output.name}' in {runs} was started with another config ({changes[0]}{more}); "
                f"to continue it use the same settings, to start anew pass output.name=NEW_NAME"
            )
    storage.make_dirs(run_dir)
    storage.write_text(saved, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


def _init_ray(ray_init_kwargs: dict | None) -> bool:
    """Connect to (or start) Ray; True when this call started a local instance of fixed size."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": True, **(ray_init_kwargs or {})}
    local = not kwargs.get("address") and not os.environ.get("RAY_ADDRESS")
    if local:
        # our own local instance: plain ray.init() would join any Ray another process runs on
        # this machine, and die with it
        kwargs["address"] = "local"
    ray.init(**kwargs)
    return kwargs.get("address") == "local"


def check_resources(cfg: ExperimentConfig, total: dict[str, float], use_gpu: bool, fixed: bool) -> None:
    """Workers plus one decode task must fit the cluster, or the run waits for data forever.

    `fixed`: a local Ray we started (no autoscaler can add nodes): too little is an error here,
    before any work. Elsewhere an autoscaler may still add nodes, so only say what is missing.
    """
    s = cfg.scaling
    need = {"CPU": s.num_workers * s.cpus_per_worker + cfg.data.decode_cpus, "GPU": s.num_workers if use_gpu else 0}
    short = [f"{need[r]:g} {r}s (has {total.get(r, 0):g})" for r in ("CPU", "GPU") if total.get(r, 0) < need[r]]
    if not short:
        return
    msg = (f"the run needs {s.num_workers} workers x {s.cpus_per_worker:g} CPU{' + 1 GPU' if use_gpu else ''} and "
           f"{cfg.data.decode_cpus:g} CPU for a decode task: {', '.join(short)}")
    if fixed:
        raise ConfigError(f"{msg}; lower scaling.num_workers, scaling.cpus_per_worker or data.decode_cpus")
    print(f"vfn: {msg} now; waiting for the autoscaler to add nodes (a fixed-size cluster would wait forever)",
          file=sys.stderr, flush=True)


def run_training(
    cfg: ExperimentConfig,
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    extra_tags: dict[str, str] | None = None,
    progress: bool = True,
    ray_init_kwargs: dict | None = None,
    callbacks: list | None = None,
) -> TrainResult:
    """Train (or continue) the run described by a validated config; returns its final metrics.

    This is the entry point a Ray Tune trial calls with its own config; `parent_run_id`,
    `run_name` and `extra_tags` let a sweep nest its trials under one MLflow run; `callbacks`
    are Ray Train callbacks (e.g. Tune's `TuneReportCallback`).
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t0 = time.time()
    if not cfg.output.name:
        cfg = cfg.with_overrides({"output.name": f"{cfg.model.name}-{cfg.fingerprint()}"})
    plan = make_plan(cfg)
    if cfg.tracking.enabled:
        from .tracking import check_tracking_server, tracking_uri

        check_tracking_server(tracking_uri(cfg))  # before anything is written or spent
    label_names = None
    if cfg.data.labels:
        from .data.manifest import read_label_names

        label_names = read_label_names(cfg.data.labels)
        if len(label_names) != cfg.data.num_classes:
            raise ConfigError(f"data.labels lists {len(label_names)} classes, data.num_classes={cfg.data.num_classes}")
    fixed = _init_ray(ray_init_kwargs)
    import ray

    use_gpu = cfg.scaling.use_gpu if isinstance(cfg.scaling.use_gpu, bool) else ray.cluster_resources().get("GPU", 0) >= 1
    check_resources(cfg, ray.cluster_resources(), use_gpu, fixed)
    run_dir = prepare_run_dir(cfg)

    uri = run_id = None
    if cfg.tracking.enabled:
        from .report import model_cost
        from .tracking import start_run

        params_m, gflops = model_cost(cfg)  # shapes only, on the meta device
        uri = tracking_uri(cfg)
        tags = {"params_M": f"{params_m:.4g}", "gflops_per_view": f"{gflops:.4g}", **(extra_tags or {})}
        run_id = start_run(cfg, run_dir, tags=tags, parent_run_id=parent_run_id, run_name=run_name)

    from ray.data import DataContext

    data_ctx = DataContext.get_current()  # our progress line replaces Ray Data's per-operator bars
    data_ctx.enable_progress_bars = False
    data_ctx.print_on_execution_start = False
    board = None
    if progress:
        from .progress import ProgressBoard

        board = ProgressBoard.remote()
    datasets = build_datasets(cfg)
    # Ray Train writes checkpoints through the same pyarrow filesystem (local disk, NFS or s3://)
    fs, runs_path = storage.resolve(runs_location(cfg))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=dict(cfg=cfg.to_dict(), plan=asdict(plan), tracking_uri=uri, mlflow_run_id=run_id,
                               run_dir=str(run_dir), progress=board, label_names=label_names),
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.scaling.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(
            name=cfg.output.name,
            storage_path=runs_path,
            storage_filesystem=fs if storage.is_remote(run_dir) else None,
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.output.keep,
                checkpoint_score_attribute=cfg.output.metric if plan.val_videos else None,
                checkpoint_score_order="max",
            ),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=callbacks,
        ),
        datasets=datasets,
        dataset_config=_split_config(),
    )
    try:
        if board is not None:
            from .progress import ProgressPrinter

            with ProgressPrinter(board):
                result = trainer.fit()
        else:
            result = trainer.fit()
    except Exception as e:
        if run_id:
            from .tracking import finish_run

            finish_run(uri, run_id, "FAILED")
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TrainingError(f"training run '{cfg.output.name}' failed: {first} (logs: {run_dir})") from e
    finally:
        if board is not None:
            ray.kill(board)

    metrics = dict(result.metrics or {})
    if metrics.get("error"):
        if run_id:
            from .tracking import finish_run

            finish_run(uri, run_id, "FAILED")
        raise TrainingError(f"training run '{cfg.output.name}' stopped: {metrics['error']}")
    latest = storage.with_path(run_dir, result.checkpoint.path) if result.checkpoint else None
    best = latest
    if plan.val_videos and result.best_checkpoints:
        best = storage.with_path(run_dir, result.get_best_checkpoint(cfg.output.metric, "max").path)
    from .checkpoints import write_run_index

    write_run_index(run_dir, best_checkpoint=best, latest_checkpoint=latest, mlflow_run_id=run_id, tracking_uri=uri,
                    plan=asdict(plan))
    if run_id:
        _log_run_artifacts(uri, run_id, run_dir, best, metrics)
    return TrainResult(cfg.output.name, run_dir, metrics, best, latest, run_id, uri, time.time() - t0)


def _log_run_artifacts(uri: str, run_id: str, run_dir: str, best: str | None, metrics: dict) -> None:
    from .checkpoints import CHECKPOINT_FILE
    from .tracking import _client, finish_run, log_artifact, plot_learning_curves

    with tempfile.TemporaryDirectory() as tmp:
        log_artifact(uri, run_id, storage.local_copy(storage.join(run_dir, CONFIG_FILE), tmp))
        if best is not None:
            ckpt = storage.join(best, CHECKPOINT_FILE)
            pointer = Path(tmp, "best_checkpoint.txt")
            pointer.write_text(f"{ckpt}\n")
            storage.upload(pointer, storage.join(run_dir, pointer.name))
            log_artifact(uri, run_id, pointer)
            fs, path = storage.resolve(ckpt)
            if (fs.get_file_info(path).size or 0) <= 200 << 20:  # small models: the file; large: the pointer only
                log_artifact(uri, run_id, storage.local_copy(ckpt, tmp), "best_checkpoint")
        curves = plot_learning_curves(uri, run_id, Path(tmp) / "learning_curves.png")
        storage.upload(curves, storage.join(run_dir, "learning_curves.png"))
        log_artifact(uri, run_id, curves)
    client = _client(uri)
    for key in ("val_top1", "val_top5", "val_mean_class_acc", "global_step"):
        if key in metrics:
            client.set_tag(run_id, f"final.{key}", f"{metrics[key]:.6g}" if isinstance(metrics[key], float) else str(metrics[key]))
    finish_run(uri, run_id, "FINISHED")
