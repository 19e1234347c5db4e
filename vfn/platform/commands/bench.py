"""`vfn bench {data,model,train}`: each benchmark lives in its own module."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "data": ("vfn.platform.bench_data", "decoded training clips/s through the Ray Data pipeline vs raw decord"),
    "model": ("vfn.model.bench", "forward/backward time of a model on this machine"),
    "train": ("vfn.platform.bench_train", "clips/s of one Ray Train worker vs a plain PyTorch loop"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # bench modules keep heavy imports (ray, mlflow) inside run(), so this stays cheap
        importlib.import_module(module_name).add_arguments(p)
        p.set_defaults(_bench_module=module_name)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(args._bench_module)
    return int(module.run(args) or 0)
