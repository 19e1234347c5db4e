"""`vfn bench model`: forward and forward+backward time of a zoo model on this machine.

Timed by `torch.utils.benchmark.Timer` (`timeit` with `--repeats` runs, after its own warm-up
runs, which also cover `--compile`'s compilation; it synchronises the accelerator around each
measurement). Runs with torch alone (no ray/mlflow/decord), so it works on a bare GPU image too.

`--json PATH` writes the figures for scripts (keys in snake_case): model, batch, frames, size, dtype,
device, train_clips_per_s, infer_clips_per_s, mfu, infer_mfu, peak_tflops, compiled, compile_s,
peak_mem_gb. `peak_mem_gb` (GiB) is the peak memory torch allocated on the GPU during the timed steps;
on the CPU, the peak resident memory of the whole process (the benchmark runs alone, so that is the
model's working set plus torch itself).

MFU (model FLOPs utilisation) = achieved model FLOP/s / the device's dense peak for the dtype. Model
FLOPs are `vfn flops`' count (2 per multiply-accumulate) per clip, x3 for a training step (forward +
backward's two products); the peak comes from `--peak-tflops` or, for known GPUs, from their data
sheet (dense, no sparsity). Without a peak (a CPU, an unknown GPU) MFU is null.
`--compile` compiles ahead (`vfn.model.compile_ahead`): `compile_s` is that time less one steady
step of each kind, and is not in the throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

from vfn.commands import former_spelling
from vfn.model.compiling import COMPILE_MODES, compile_ahead

JSON_KEYS = ("model", "batch", "frames", "size", "dtype", "device", "train_clips_per_s", "infer_clips_per_s", "mfu",
             "infer_mfu", "peak_tflops", "compiled", "compile_s", "peak_mem_gb")
# dense peak TFLOP/s from the data sheets (SXM parts): (bf16/fp16, tf32, fp32)
PEAK_TFLOPS = {"H100": (989.4, 494.7, 66.9), "H200": (989.4, 494.7, 66.9), "A100": (312.0, 156.0, 19.5)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="videofocalnet_tiny")
    parser.add_argument("--design", default="parallel")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    former_spelling(parser, "--size", "input_size")
    former_spelling(parser, "--batch", "batch_size")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per step (after warm-up runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="autocast dtype (float32 = no autocast)")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (ahead of timing)")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak for --dtype, for MFU (default: known GPUs' data sheets)")
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


def peak_tflops(device: torch.device, dtype: str) -> float | None:
    """The data-sheet dense peak of a known GPU for `dtype` (float32 counts TF32 when torch allows it)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peaks is None:
        return None
    if dtype != "float32":
        return peaks[0]
    return peaks[1] if torch.backends.cuda.matmul.allow_tf32 else peaks[2]


def benchmark(args: argparse.Namespace) -> dict:
    """Time one inference and one training step of the model `args` describe; the results as a
    dict: the JSON keys plus the model's size and the seconds per step."""
    from vfn.model.flops import count_flops
    from vfn.model.zoo import create_model

    device = torch.device(args.device)
    model = create_model(args.model, design=args.design, num_frames=args.frames, img_size=args.input_size,
                         embed_dim=args.embed_dim, depths=args.depths,
                         grad_checkpointing=args.grad_checkpointing).to(device)
    params, gmacs = count_flops(model, args.frames, args.input_size)
    x = torch.randn(args.batch_size, args.frames, 3, args.input_size, args.input_size, device=device)
    dtype = getattr(torch, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def forward(net=model):
        with torch.no_grad(), autocast:
            net.eval()(x)

    def forward_backward(net=model):
        net.train()
        with autocast:
            loss = net(x).float().logsumexp(-1).mean()
        loss.backward()
        net.zero_grad(set_to_none=True)

    compiled = None
    if args.compile:
        compiled = compile_ahead(model, lambda net: (forward_backward(net), forward(net)), args.compile_mode)
        model = compiled.module
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    infer_s = _seconds_per_call(lambda: forward(model), args.repeats)
    train_s = _seconds_per_call(lambda: forward_backward(model), args.repeats)
    peak = args.peak_tflops or peak_tflops(device, args.dtype)
    model_tflop = 2 * gmacs / 1e3  # per clip, forward
    return {
        "model": args.model, "batch": args.batch_size, "frames": args.frames, "size": args.input_size,
        "dtype": args.dtype,
        "device": str(device),
        "train_clips_per_s": args.batch_size / train_s,
        "infer_clips_per_s": args.batch_size / infer_s,
        "mfu": 3 * model_tflop * args.batch_size / train_s / peak if peak else None,
        "infer_mfu": model_tflop * args.batch_size / infer_s / peak if peak else None,
        "peak_tflops": peak,
        "compiled": bool(compiled and compiled.compiled),
        "compile_s": max(compiled.seconds - train_s - infer_s, 0.0) if compiled else None,
        "peak_mem_gb": _peak_mem_gb(device),
        "params_m": params, "gmacs": gmacs, "infer_s": infer_s, "train_s": train_s,
    }


def run(args: argparse.Namespace) -> int:
    r = benchmark(args)
    device = torch.device(r["device"])
    clip = f"{args.frames}x{args.input_size}x{args.input_size}"
    print(f"{args.model} design={args.design} {args.batch_size}x{clip} on {device} "
          f"({args.dtype}{', compiled' if r['compiled'] else ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    print(f"params {r['params_m']:.2f} M, {r['gmacs']:.1f} GMACs = {2 * r['gmacs']:.1f} GFLOPs per view")
    print(f"forward:          mean {r['infer_s'] * 1e3:8.1f} ms  ({args.repeats} runs after warm-up)")
    print(f"forward+backward: mean {r['train_s'] * 1e3:8.1f} ms  ({args.repeats} runs after warm-up)")
    print(f"throughput: {r['train_clips_per_s']:.2f} clips/s training, {r['infer_clips_per_s']:.2f} clips/s inference")
    if r["mfu"] is not None:
        print(f"MFU: {100 * r['mfu']:.1f}% training, {100 * r['infer_mfu']:.1f}% inference "
              f"(of {r['peak_tflops']:.0f} dense TFLOP/s)")
    else:
        print("MFU: n/a (no known peak for this device: give --peak-tflops)")
    if args.compile:
        print(f"compile: {r['compile_s']:.1f} s ahead of timing" if r["compiled"] else "compile failed: ran eagerly")
    where = "GPU memory (allocated by torch)" if device.type == "cuda" else "process memory (peak RSS)"
    print(f"peak {where}: {r['peak_mem_gb']:.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({k: r[k] for k in JSON_KEYS}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
