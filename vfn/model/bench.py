"""`vfn bench model`: forward and forward+backward time of a zoo model on this machine.

Runs with torch alone (no ray/mlflow), so it works on a bare GPU image too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="videofocalnet_tiny")
    parser.add_argument("--design", default="parallel")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="autocast dtype (float32 = no autocast)")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeats: int, device: torch.device) -> list[float]:
    fn()  # warm-up (allocations, cudnn autotuning, compilation)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace) -> int:
    from .flops import count_flops
    from .zoo import create_model

    device = torch.device(args.device)
    model = create_model(args.model, design=args.design, num_frames=args.frames, img_size=args.size,
                         grad_checkpointing=args.grad_checkpointing).to(device)
    params, gflops = count_flops(model, args.frames, args.size)
    if args.compile:
        model = torch.compile(model)
    x = torch.randn(args.batch, args.frames, 3, args.size, args.size, device=device)
    dtype = getattr(torch, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def forward():
        with torch.no_grad(), autocast:
            model.eval()(x)

    def forward_backward():
        model.train()
        with autocast:
            loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fwd = _time(forward, args.repeats, device)
    fwd_bwd = _time(forward_backward, args.repeats, device)
    print(f"{args.model} design={args.design} {args.batch}x{args.frames}x{args.size}x{args.size} on {device} "
          f"({args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"params {params:.2f} M, {gflops:.1f} GFLOPs per view")
    print(f"forward:          median {statistics.median(fwd) * 1e3:8.1f} ms  (min {min(fwd) * 1e3:.1f})")
    print(f"forward+backward: median {statistics.median(fwd_bwd) * 1e3:8.1f} ms  (min {min(fwd_bwd) * 1e3:.1f})")
    print(f"throughput: {args.batch / statistics.median(fwd_bwd):.2f} clips/s training, "
          f"{args.batch / statistics.median(fwd):.2f} clips/s inference")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0
