"""`vfn bench {data,encoding,model,train} [options]`: each benchmark lives in its own module.

Only the chosen benchmark's module is imported (the model benchmark runs on a GPU image without
ray or mlflow); its own parser reads the remaining options.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "data": ("vfn.commands.bench.data", "decoded training clips/s through the Ray Data pipeline vs raw decord"),
    "encoding": ("vfn.commands.bench.encoding",
                 "held-out top-1 from original-byte vs re-encoded shards of an order-sensitive set, over seeds"),
    "model": ("vfn.commands.bench.model", "forward/backward time of a model on this machine"),
    "train": ("vfn.commands.bench.train", "clips/s of one Ray Train worker vs a plain PyTorch loop"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "benchmarks: " + "; ".join(f"{k}: {v[1]}" for k, v in BENCHMARKS.items())
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the benchmark (see --help)")


def run(args: argparse.Namespace) -> int:
    module_name, description = BENCHMARKS[args.benchmark]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"vfn bench {args.benchmark}", description=description)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
