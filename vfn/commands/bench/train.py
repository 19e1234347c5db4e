"""`vfn bench train`: training clips/s of one Ray Train worker vs a plain single-process PyTorch loop.

Both run the platform's one training step (`step.TrainStep`, as `vfn train` does) on the same
model, batch size and threads, fed the same decoded batches (decoded once, up front): the plain
loop iterates them from memory, the Ray worker receives them through Ray Data's streaming split
(`iter_torch_batches`) from the object store. The ratio is what Ray Train and Ray Data ingest
cost (Ray's own benchmark puts Train within 2.5% of native PyTorch). A third figure runs the Ray
worker on the live pipeline (`vfn train`'s decode tasks on the same CPUs as the step), which on a
CPU-only machine also measures the decode competing with the step for cores. Steady state only:
the first `--warmup` steps (process start, first batches, allocator warm-up) are not timed.
`--json PATH` writes plain_clips_per_s, ray_clips_per_s, ray_over_plain, ray_live_decode_clips_per_s.
`--compile` runs both loops with `model.compile` (the step compiles ahead, outside the timed steps).
"""

from __future__ import annotations

import argparse
import time

from vfn.commands import former_spelling
from vfn.data.video import ClipSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="training shards (default: a synthetic set in a temp dir)")
    parser.add_argument("--videos", type=int, default=320, help="synthetic videos when --data is not given")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=64)
    former_spelling(parser, "--size", "input_size")
    parser.add_argument("--embed-dim", type=int, default=24)
    parser.add_argument("--depths", type=int, nargs=4, default=[1, 1, 2, 1])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both loops")
    parser.add_argument("--worker-cpus", type=float, default=0.5,
                        help="CPUs Ray reserves for the worker (the rest of the machine is left to Ray Data)")
    parser.add_argument("--compile", action="store_true",
                        help="model.compile=true in both loops (compiled ahead, before the timed steps)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="experiment overrides of the step, e.g. optim.accum_steps=2 augment.mixup_prob=1")


def bench_config(args, num_classes: int):
    """The experiment both loops train: the real recipe's step (AdamW, label smoothing, clipping,
    mixup/cutmix when enabled, accumulation) on a small model; `key=value` overrides apply last."""
    from vfn.config.schema import config_from_dict

    raw = {
        "model": {"embed_dim": args.embed_dim, "depths": args.depths, "drop_path_rate": 0.0, "compile": args.compile},
        "data": {"num_classes": num_classes, "num_frames": args.frames, "input_size": args.input_size},
        "optim": {"optimizer": "adamw", "lr": 1e-3, "lr_scale_batch": None, "epochs": 1000, "warmup_epochs": 1,
                  "warmup_lr": 1e-5, "min_lr": 1e-5, "batch_size": args.batch_size, "clip_grad": 5.0},
        "scaling": {"num_workers": 1, "cpus_per_worker": args.worker_cpus, "use_gpu": False},
    }
    return config_from_dict(raw, "vfn bench train").with_overrides(list(args.overrides))


def bench_plan(cfg, num_videos: int):
    from vfn.training.step import Plan

    micro = num_videos // cfg.optim.batch_size
    steps = -(-micro // cfg.optim.accum_steps)
    return Plan(train_videos=num_videos, val_videos=0, micro_steps_per_epoch=micro, steps_per_epoch=steps,
                total_steps=steps * cfg.optim.epochs, warmup_steps=steps, lr=cfg.scaled_lr)


def _timed(batches, step, args) -> float:
    """clips/s over `args.steps` micro-batches after `args.warmup` untimed ones."""
    t0, n = None, 0
    micro = step.plan.micro_steps_per_epoch
    for i, batch in enumerate(batches):
        if i == args.warmup:
            t0 = time.perf_counter()
        if i == args.warmup + args.steps:
            break
        step(batch["video"], batch["label"], batch.get("valid"), i % micro)
        n += len(batch["label"]) if i >= args.warmup else 0
    if t0 is None or n == 0:
        raise RuntimeError("not enough training videos for --warmup + --steps batches; use more --videos")
    return n / (time.perf_counter() - t0)


def decoded_batches(files, cfg, count: int) -> list[dict]:
    """`count` training batches of uint8 clips decoded once (no augmentation: both loops get the same)."""
    import numpy as np
    import pyarrow.parquet as pq

    from vfn.data.clips import decode_train_clip

    table = pq.read_table(files, columns=["video", "label"])
    clip, b = ClipSpec.from_config(cfg.data), cfg.optim.batch_size
    rows = [i % table.num_rows for i in range(count * b)]
    videos = np.stack([decode_train_clip(table.column("video")[i].as_py(), clip, None, np.random.default_rng(i))
                       for i in rows])
    labels = np.array([table.column("label")[i].as_py() for i in rows], np.int64)
    return [{"video": videos[k:k + b], "label": labels[k:k + b]} for k in range(0, len(rows), b)]


def plain_loop(args, batches: list[dict], cfg, plan) -> float:
    import itertools

    import torch

    from vfn.training.step import TrainStep

    torch.set_num_threads(args.threads)
    step = TrainStep(cfg, plan, torch.device("cpu"))
    tensors = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches]
    return _timed(itertools.cycle(tensors), step, args)


def _ray_worker(config: dict) -> float:
    import itertools

    import ray.train
    import ray.train.torch
    import torch

    from vfn.config.schema import ExperimentConfig
    from vfn.training.step import Plan, TrainStep

    args = argparse.Namespace(**config["args"])
    torch.set_num_threads(args.threads)
    cfg, plan = ExperimentConfig.model_validate(config["cfg"]), Plan(**config["plan"])
    step = TrainStep(cfg, plan, ray.train.torch.get_device(), wrap=ray.train.torch.prepare_model)
    shard = ray.train.get_dataset_shard("train")
    epochs = (shard.iter_torch_batches(batch_size=cfg.optim.batch_size, drop_last=True) for _ in itertools.count())
    return _timed(itertools.chain.from_iterable(epochs), step, args)


def decoded_dataset(batches: list[dict]):
    """The decoded batches as a materialised Ray dataset (in the object store, nothing left to decode)."""
    import ray.data

    rows = [{"video": v, "label": lab} for b in batches for v, lab in zip(b["video"], b["label"])]
    return ray.data.from_items(rows).materialize()


def live_dataset(files, cfg):
    from vfn.data.pipeline import build_dataset

    return build_dataset(files, "train", ClipSpec.from_config(cfg.data), None, seed=0,
                         decode_batch_size=cfg.optim.batch_size, num_cpus=0.5)


def ray_worker(args, dataset, cfg, plan, storage) -> float:
    from dataclasses import asdict

    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from vfn.runtime.ray_setup import worker_scaling

    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config=dict(args=vars(args), cfg=cfg.to_dict(), plan=asdict(plan)),
        scaling_config=worker_scaling(cfg, gpu=False),
        run_config=RunConfig(name=f"bench-train-{int(time.time())}", storage_path=storage),
        datasets={"train": dataset},
    )
    return trainer.fit().return_value


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import tempfile
    from pathlib import Path

    from vfn.data.shards import list_shards, read_metadata
    from vfn.runtime.ray_setup import init_ray, quiet_ray_data

    with tempfile.TemporaryDirectory() as tmp:
        files = list_shards(args.data or synthetic_shards(args, tmp))
        labels = read_metadata(files, ["label"]).column("label").to_pylist()
        cfg = bench_config(args, num_classes=int(max(labels)) + 1)
        plan = bench_plan(cfg, len(labels))
        print(f"model: videofocalnet_tiny embed {args.embed_dim} depths {args.depths}, "
              f"clips {args.frames}x{args.input_size}^2, "
              f"batch {cfg.optim.batch_size} x {cfg.optim.accum_steps} accumulated, {args.threads} torch thread(s); "
              f"{args.steps} timed micro-batches after {args.warmup}{'; compiled ahead' if args.compile else ''}")
        batches = decoded_batches(files, cfg, min(args.warmup + args.steps, 64))
        fig = {"plain_clips_per_s": plain_loop(args, batches, cfg, plan)}
        print(f"plain PyTorch loop, decoded batches from memory:     {fig['plain_clips_per_s']:7.1f} clips/s",
              flush=True)
        init_ray({"log_to_driver": False})
        quiet_ray_data()
        fig["ray_clips_per_s"] = ray_worker(args, decoded_dataset(batches), cfg, plan, os.path.join(tmp, "ray"))
        fig["ray_over_plain"] = fig["ray_clips_per_s"] / fig["plain_clips_per_s"]
        print(f"one Ray Train worker, the same batches via Ray Data: {fig['ray_clips_per_s']:7.1f} clips/s = "
              f"{fig['ray_over_plain']:.2f}x the plain loop", flush=True)
        live = ray_worker(args, live_dataset(files, cfg), cfg, plan, os.path.join(tmp, "ray"))
        fig["ray_live_decode_clips_per_s"] = live
        print(f"one Ray Train worker, live decode on the same CPUs: {fig['ray_live_decode_clips_per_s']:7.1f} clips/s")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def synthetic_shards(args, tmp: str) -> str:
    import os

    from vfn.data.ingest import write_shards
    from vfn.data.synth import make_synthetic_dataset

    synth = make_synthetic_dataset(os.path.join(tmp, "synth"), args.videos, seed=0, num_workers=2)
    data = os.path.join(tmp, "shards")
    write_shards(synth.train_manifest, data, root=synth.root, progress=False, max_shard_bytes=256 << 10)
    return data
