"""`vfn bench model` over the zoo on a GPU, eager vs compiled, for the table in docs/performance.md (torch + timm only).

    PYTHONPATH=. python scripts/gpu_bench.py OUT.jsonl [--budget-s 500] [--profile PROFILE.txt]

Runs, in this order, until `--budget-s` has passed (then skips the rest, saying so): Tiny at batch 8
eager, compiled and compiled with CUDA graphs (`reduce-overhead`); Tiny with CUDA graphs at the
largest batch that fits (predicted from batch 8's peak memory, halved on out-of-memory); Small and
Base at batch 8 eager and with CUDA graphs. All bf16 autocast, 8x224. On an H100 the whole plan
needs about 12 minutes, most of it compiling.
Each result is a line of `vfn bench model --json`'s keys in OUT.jsonl, written as it comes.
`--profile` first writes torch.profiler's top CUDA kernels of one eager Tiny training step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vfn.commands.bench import model as bench

FRACTION_OF_MEMORY = 0.8  # headroom for the allocator's fragmentation and compile's workspaces


def bench_args(model: str, batch: int, mode: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = ["--model", model, "--batch-size", str(batch), "--dtype", "bfloat16", "--repeats", "10", "--device", "cuda"]
    return parser.parse_args(argv + ([] if mode == "eager" else ["--compile", "--compile-mode", mode]))


def run_one(model: str, batch: int, mode: str, out: Path) -> dict | None:
    torch.cuda.empty_cache()
    torch._dynamo.reset()  # each row compiles afresh (its own CUDA graph pool too)
    t0 = time.perf_counter()
    try:
        r = bench.benchmark(bench_args(model, batch, mode))
    except torch.OutOfMemoryError:
        print(f"{model} batch {batch} {mode}: out of memory", flush=True)
        return None
    r["wall_s"], r["mode"] = time.perf_counter() - t0, mode if r["compiled"] else "eager"
    with out.open("a") as f:
        f.write(json.dumps(r) + "\n")
    print(f"{model:20s} b{batch:<4d} {r['mode']:16s} train {r['train_clips_per_s']:7.1f} "
          f"clips/s (MFU {100 * (r['mfu'] or 0):4.1f}%)  infer {r['infer_clips_per_s']:7.1f} clips/s  "
          f"peak {r['peak_mem_gb']:5.1f} GiB  compile {r['compile_s'] or 0:5.1f} s  ({r['wall_s']:.0f} s)", flush=True)
    return r


def largest_batch(first: dict) -> int:
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    return max(8, int(FRACTION_OF_MEMORY * total / (first["peak_mem_gb"] / first["batch"])) // 8 * 8)


def profile_tiny(path: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    from vfn.model import create_model

    model = create_model("videofocalnet_tiny", num_frames=8, img_size=224).cuda().train()
    x = torch.randn(8, 8, 3, 224, 224, device="cuda")
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x).float().logsumexp(-1).mean().backward()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x).float().logsumexp(-1).mean().backward()
        torch.cuda.synchronize()
    path.write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=60))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--budget-s", type=float, default=500)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    out, t0 = Path(args.out), time.perf_counter()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    if args.profile:
        profile_tiny(Path(args.profile))
    graphs = "reduce-overhead"
    plan = [("videofocalnet_tiny", 8, "eager"), ("videofocalnet_tiny", 8, "default"), ("videofocalnet_tiny", 8, graphs),
            ("largest", 0, graphs), ("videofocalnet_small", 8, "eager"), ("videofocalnet_small", 8, graphs),
            ("videofocalnet_base", 8, "eager"), ("videofocalnet_base", 8, graphs)]
    first = None
    for model, batch, mode in plan:
        if time.perf_counter() - t0 > args.budget_s:
            print(f"budget spent: skipped {model} b{batch} {mode}", flush=True)
            continue
        if model == "largest":
            batch = largest_batch(first)
            while batch >= 8 and run_one("videofocalnet_tiny", batch, mode, out) is None:
                batch //= 2
            continue
        r = run_one(model, batch, mode, out)
        first = first or r
    return 0


if __name__ == "__main__":
    sys.exit(main())
