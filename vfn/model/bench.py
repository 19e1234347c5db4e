"""`vfn bench model`: forward and forward+backward time of a zoo model on this machine.

Timed by `torch.utils.benchmark.Timer` (`timeit` with `--repeats` runs, after its own warm-up
runs, which also cover `--compile`'s compilation; it synchronises the accelerator around each
measurement). Runs with torch alone (no ray/mlflow/decord), so it works on a bare GPU image too.

`--json PATH` writes the figures for scripts (keys in snake_case): model, batch, frames, size, dtype,
device, train_clips_per_s, infer_clips_per_s, peak_mem_gb, compiled. `peak_mem_gb` (GiB) is the
peak memory torch allocated on the GPU during the timed steps; on the CPU, the peak resident memory of
the whole process (the benchmark runs alone, so that is the model's working set plus torch itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

JSON_KEYS = ("model", "batch", "frames", "size", "dtype", "device", "train_clips_per_s", "infer_clips_per_s",
             "peak_mem_gb", "compiled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="videofocalnet_tiny")
    parser.add_argument("--design", default="parallel")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per step (after warm-up runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="autocast dtype (float32 = no autocast)")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--embed-dim", type=int, default=None, help="override the zoo model's width (small models)")
    parser.add_argument("--depths", type=int, nargs=4, default=None, metavar="N",
                        help="override the zoo model's blocks per stage (four numbers)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")


def _seconds_per_call(fn, repeats: int) -> float:
    """Mean seconds of one call over `repeats` runs, measured by torch's Timer with this
    process's thread count (Timer defaults to one thread, which would understate a CPU)."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(number=repeats).mean


def _peak_mem_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource  # POSIX; ru_maxrss is in KiB on Linux, bytes on macOS

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def benchmark(args: argparse.Namespace) -> dict:
    """Time one inference and one training step of the model `args` describe; the results as a
    dict: the JSON keys plus the model's size and the seconds per step."""
    from .flops import count_flops
    from .zoo import create_model

    device = torch.device(args.device)
    model = create_model(args.model, design=args.design, num_frames=args.frames, img_size=args.size,
                         embed_dim=args.embed_dim, depths=args.depths,
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
        torch.cuda.reset_peak_memory_stats(device)
    infer_s = _seconds_per_call(forward, args.repeats)
    train_s = _seconds_per_call(forward_backward, args.repeats)
    return {
        "model": args.model,
        "batch": args.batch,
        "frames": args.frames,
        "size": args.size,
        "dtype": args.dtype,
        "device": str(device),
        "train_clips_per_s": args.batch / train_s,
        "infer_clips_per_s": args.batch / infer_s,
        "peak_mem_gb": _peak_mem_gb(device),
        "compiled": bool(args.compile),
        "params_m": params,
        "gflops": gflops,
        "infer_s": infer_s,
        "train_s": train_s,
    }


def run(args: argparse.Namespace) -> int:
    r = benchmark(args)
    device = torch.device(r["device"])
    print(f"{args.model} design={args.design} {args.batch}x{args.frames}x{args.size}x{args.size} on {device} "
          f"({args.dtype}{', compiled' if args.compile else ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    print(f"params {r['params_m']:.2f} M, {r['gflops']:.1f} GFLOPs per view")
    print(f"forward:          mean {r['infer_s'] * 1e3:8.1f} ms  ({args.repeats} runs after warm-up)")
    print(f"forward+backward: mean {r['train_s'] * 1e3:8.1f} ms  ({args.repeats} runs after warm-up)")
    print(f"throughput: {r['train_clips_per_s']:.2f} clips/s training, {r['infer_clips_per_s']:.2f} clips/s inference")
    where = "GPU memory (allocated by torch)" if device.type == "cuda" else "process memory (peak RSS)"
    print(f"peak {where}: {r['peak_mem_gb']:.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({k: r[k] for k in JSON_KEYS}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
