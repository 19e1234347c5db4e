"""The `vfn` command.

Each subcommand lives in its own module with two functions, `add_arguments(parser)` and
`run(args) -> int`. Modules are imported only when their command runs, so `vfn flops` on a
GPU image without ray or mlflow still works.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("vfn.platform.commands.quickstart", "synthetic data -> 2-worker training -> eval -> MLflow"),
    "train": ("vfn.platform.commands.train", "train from an experiment YAML with Ray Train"),
    "eval": ("vfn.platform.commands.evaluate", "multi-view evaluation of a checkpoint or run"),
    "predict": ("vfn.platform.commands.predict", "top-5 classes for one video file"),
    "sweep": ("vfn.platform.commands.sweep", "Ray Tune sweep from a sweep YAML"),
    "ablate": ("vfn.platform.commands.ablate", "sweep reported as an ablation table"),
    "compare": ("vfn.platform.commands.compare", "compare MLflow runs side by side"),
    "data": ("vfn.platform.commands.data", "manifests, Parquet shards, synthetic dataset"),
    "flops": ("vfn.model.flops", "parameters and GFLOPs per view of a model"),
    "bench": ("vfn.platform.commands.bench", "benchmarks (data, model, train)"),
}


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="vfn", description="Video-FocalNets experiment platform")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    loaded = {}
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the module of the command being run
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            loaded[name] = module
    return parser, loaded


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, loaded = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(loaded[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("vfn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
