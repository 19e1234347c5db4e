"""`vfn bench train`: training clips/s of one Ray Train worker vs a plain single-process PyTorch loop.

Both train the same model on the same Parquet shards with the same batch size and threads; the
plain loop decodes with a torch DataLoader (one decode process), the Ray worker reads its shard
from the Ray Data pipeline `vfn train` uses. Steady state only: the first `--warmup` steps
(process start, first batches, allocator warm-up) are not timed. The ratio is Ray's overhead.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="training shards (default: a synthetic set in a temp dir)")
    parser.add_argument("--videos", type=int, default=320, help="synthetic videos when --data is not given")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--embed-dim", type=int, default=24)
    parser.add_argument("--depths", type=int, nargs=4, default=[1, 1, 2, 1])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both loops")
    parser.add_argument("--worker-cpus", type=float, default=0.5,
                        help="CPUs Ray reserves for the worker (the rest of the machine is left to Ray Data)")


def _model_and_optimizer(args, num_classes):
    import torch

    from vfn.model import create_model

    torch.manual_seed(0)
    model = create_model("videofocalnet_tiny", num_classes=num_classes, num_frames=args.frames, img_size=args.size,
                         embed_dim=args.embed_dim, depths=args.depths, drop_path_rate=0.0)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def _step(model, optimizer, video, label):
    import torch.nn.functional as F

    from vfn.platform.data.clips import normalize

    loss = F.cross_entropy(model(normalize(video)), label)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _timed(batches, model, optimizer, args) -> float:
    """clips/s over `args.steps` steps after `args.warmup` untimed ones."""
    t0, n = None, 0
    for i, batch in enumerate(batches):
        if i == args.warmup:
            t0 = time.perf_counter()
        if i == args.warmup + args.steps:
            break
        _step(model, optimizer, batch["video"], batch["label"])
        n += len(batch["label"]) if i >= args.warmup else 0
    if t0 is None or n == 0:
        raise RuntimeError("not enough training videos for --warmup + --steps batches; use more --videos")
    return n / (time.perf_counter() - t0)


class _ShardClips:
    """A map-style torch Dataset over the rows of Parquet shards (decoded per item)."""

    def __init__(self, files, clip):
        import pyarrow.parquet as pq

        table = pq.read_table(files, columns=["video", "label"])
        self.videos, self.labels, self.clip = table.column("video"), table.column("label").to_pylist(), clip

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        import numpy as np
        import torch

        from vfn.platform.data.clips import decode_train_clip

        x = decode_train_clip(self.videos[i].as_py(), self.clip, None, np.random.default_rng(i))
        return {"video": torch.from_numpy(x), "label": torch.tensor(self.labels[i])}


def plain_loop(args, files, num_classes, clip) -> float:
    import itertools

    import torch

    torch.set_num_threads(args.threads)
    model, optimizer = _model_and_optimizer(args, num_classes)
    loader = torch.utils.data.DataLoader(_ShardClips(files, clip), batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, num_workers=1, persistent_workers=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epochs back to back
    return _timed(batches, model, optimizer, args)


def _ray_worker(config: dict) -> float:
    import itertools

    import ray.train
    import ray.train.torch
    import torch

    args = argparse.Namespace(**config["args"])
    torch.set_num_threads(args.threads)
    model, optimizer = _model_and_optimizer(args, config["num_classes"])
    model = ray.train.torch.prepare_model(model)
    shard = ray.train.get_dataset_shard("train")
    epochs = (shard.iter_torch_batches(batch_size=args.batch_size, drop_last=True) for _ in itertools.count())
    return _timed(itertools.chain.from_iterable(epochs), model, optimizer, args)


def ray_worker(args, files, num_classes, clip, storage) -> float:
    from ray.data import DataContext
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from vfn.platform.data.pipeline import build_dataset

    from vfn.platform.train import _init_ray

    _init_ray({"log_to_driver": False})
    DataContext.get_current().enable_progress_bars = False
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config=dict(args=vars(args), num_classes=num_classes),
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": args.worker_cpus}),
        run_config=RunConfig(name=f"bench-train-{int(time.time())}", storage_path=storage),
        datasets={"train": build_dataset(files, "train", clip, None, seed=0, decode_batch_size=args.batch_size,
                                         num_cpus=0.5)},
    )
    return trainer.fit().return_value


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from vfn.platform.data.clips import ClipSpec
    from vfn.platform.data.shards import list_shards, read_metadata

    clip = ClipSpec(num_frames=args.frames, sampling="segment", input_size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from vfn.platform.data.shards import write_shards
            from vfn.platform.data.synth import make_synthetic_dataset

            synth = make_synthetic_dataset(os.path.join(tmp, "synth"), args.videos, seed=0, num_workers=2)
            data = os.path.join(tmp, "shards")
            write_shards(synth.train_manifest, data, root=synth.root, progress=False, max_shard_bytes=256 << 10)
        files = list_shards(data)
        num_classes = int(max(read_metadata(files, ["label"]).column("label").to_pylist())) + 1
        print(f"model: videofocalnet_tiny embed {args.embed_dim} depths {args.depths}, clips {args.frames}x{args.size}^2, "
              f"batch {args.batch_size}, {args.threads} torch thread(s); {args.steps} timed steps after {args.warmup}")
        plain = plain_loop(args, files, num_classes, clip)
        print(f"plain PyTorch loop (DataLoader, 1 decode process): {plain:7.1f} clips/s", flush=True)
        worker = ray_worker(args, files, num_classes, clip, os.path.join(tmp, "ray"))
        print(f"one Ray Train worker (Ray Data shard):              {worker:7.1f} clips/s")
        print(f"Ray Train worker / plain loop: {worker / plain:.2f}x ({100 * (1 - worker / plain):+.0f}% overhead)")
    return 0
