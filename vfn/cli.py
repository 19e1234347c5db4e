"""The `vfn` command.

Each subcommand lives in its own module with two functions, `add_arguments(parser)` and
`run(args) -> int`. Modules are imported only when their command runs, so `vfn flops` on a
GPU image without ray or mlflow still works.

The command name is read first; the command's own parser then reads the rest with
`parse_intermixed_args`, so `key=value` overrides may stand anywhere after the command
(`vfn eval RUN --data SHARDS eval.num_clips=4`). argparse refuses intermixed parsing for parsers
with subcommands or a REMAINDER argument (`vfn data`, `vfn bench`): those parse as usual.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from vfn import installed_version
from vfn.errors import ConfigError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("vfn.commands.quickstart", "synthetic data -> 2-worker training -> eval -> MLflow"),
    "train": ("vfn.commands.train", "train from an experiment YAML with Ray Train"),
    "eval": ("vfn.commands.evaluate", "multi-view evaluation of a checkpoint or run"),
    "predict": ("vfn.commands.predict", "top-5 classes for one video file"),
    "pretrain": ("vfn.commands.pretrain", "pre-train the image FocalNet to inflate, on synthetic frames"),
    "sweep": ("vfn.commands.sweep", "Ray Tune sweep from a sweep YAML"),
    "ablate": ("vfn.commands.ablate", "sweep reported as an ablation table"),
    "compare": ("vfn.commands.compare", "compare MLflow runs side by side"),
    "data": ("vfn.commands.data", "manifests, Parquet shards, synthetic dataset"),
    "flops": ("vfn.commands.flops", "parameters and GFLOPs per view of a model"),
    "models": ("vfn.commands.models", "the model zoo and the paper's released checkpoints"),
    "bench": ("vfn.commands.bench", "benchmarks (data, model, train)"),
}


def main_parser() -> argparse.ArgumentParser:
    """`vfn`'s own parser: the list of commands (for `vfn --help` and unknown-command errors)."""
    parser = argparse.ArgumentParser(prog="vfn", description="Video-FocalNets experiment platform")
    parser.add_argument("--version", action="version", version=f"vfn {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def command_parser(name: str) -> tuple[argparse.ArgumentParser, ModuleType]:
    """The parser of `vfn NAME` and the command's module (imported here, and only this one)."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"vfn {name}", description=help_text)
    module.add_arguments(parser)
    return parser, module


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, ModuleType]:
    """The command's arguments (with `command` set to its name) and its module; exits with
    argparse's message on a usage error, as `parse_args` does."""
    if not argv or argv[0] not in COMMANDS:
        main_parser().parse_args(argv[:1])  # prints the help, or the error for a missing/unknown command
        raise SystemExit(2)  # not reached: for anything but a command name argparse has exited
    parser, module = command_parser(argv[0])
    try:
        args = parser.parse_intermixed_args(argv[1:])
    except TypeError:  # subcommands or REMAINDER: argparse refuses them before parsing anything
        args = parser.parse_args(argv[1:])
    args.command = argv[0]
    return args, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, module = parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except ConfigError as e:  # a mistake in what was asked, found before any work: one line, exit 2
        print(f"vfn {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vfn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
